"""`alembic check`: the models match what the migrations made, so `alembic revision
--autogenerate` writes nothing (a drift fails here, in the fast tier and CI)."""

import asyncio
from pathlib import Path

from servicekit.migrations import check

MIGRATIONS = Path(__file__).parents[1] / "migrations"


async def test_the_models_match_the_migrations(database_url: str) -> None:
    await asyncio.to_thread(check, MIGRATIONS, database_url)
