"""Helpers for tests that write events and then read the log."""

import asyncio

import asyncpg

from eventlog.tables import INBOX
from servicekit.db import asyncpg_dsn

_INBOX_ROWS = f"SELECT count(*) FROM {INBOX}"


async def events_sequenced(database_url: str, timeout: float = 10.0) -> None:
    """Wait until the sequencer has moved every committed event from the inbox into the log:
    a write's events reach the log a few milliseconds after its commit."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while await connection.fetchval(_INBOX_ROWS):
            assert asyncio.get_running_loop().time() < deadline, "the inbox was not emptied"
            await asyncio.sleep(0.01)
    finally:
        await connection.close()
