from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devstack.testing import fresh_database
from eventlog import MIGRATIONS

ROOT = Path(__file__).parents[3]
# The log's tables were created by api-service's migrations 0001-0003; its own adopt them.
API_MIGRATIONS = ROOT / "api-service" / "migrations"


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with fresh_database("eventlog", [API_MIGRATIONS, MIGRATIONS]) as url:
        yield url
