"""Alembic glue shared by every service that owns tables.

Each service keeps its tables in its own PostgreSQL schema, with its own `alembic_version`
table there, and its `migrations/env.py` is one call to `run_migrations_online`.
"""

import asyncio
import os
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool


def run_migrations_online(metadata: MetaData, schema: str) -> None:
    url = context.config.get_main_option("sqlalchemy.url") or os.environ["DATABASE_URL"]
    asyncio.run(_migrate(url, metadata, schema))


async def _migrate(url: str, metadata: MetaData, schema: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool, hide_parameters=True)
    try:
        async with engine.connect() as conn:
            # Replicas starting together would otherwise race on the same migration.
            await conn.execute(text("SELECT pg_advisory_lock(hashtext(:s))"), {"s": schema})
            try:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                await conn.commit()
                await conn.run_sync(_run, metadata, schema)
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(hashtext(:s))"), {"s": schema})
                await conn.commit()
    finally:
        await engine.dispose()


def _run(connection: Connection, metadata: MetaData, schema: str) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        include_schemas=True,
        include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
    )
    with context.begin_transaction():
        context.run_migrations()


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    """Run a service's migrations (blocking: call it from a thread inside an event loop)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, revision)
