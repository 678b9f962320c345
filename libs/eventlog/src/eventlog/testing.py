"""Helpers for tests that write events and then read the log."""

import asyncio
import json
from typing import Any

import asyncpg

from eventlog.tables import INBOX, LOG
from servicekit.db import asyncpg_dsn

_INBOX_ROWS = f"SELECT count(*) FROM {INBOX}"
_CHANNEL_EVENTS = f"SELECT type, data FROM {LOG} WHERE channel = $1 ORDER BY id"


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


async def channel_events(database_url: str, channel: str) -> list[tuple[str, dict[str, Any]]]:
    """The (type, data) of every event in the log on `channel`, oldest first, once every
    committed event has been sequenced: what a subscriber of the channel would receive."""
    await events_sequenced(database_url)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(_CHANNEL_EVENTS, channel)
    finally:
        await connection.close()
    return [(row["type"], json.loads(row["data"])) for row in rows]
