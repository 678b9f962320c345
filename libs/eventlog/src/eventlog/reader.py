"""Reading the log: ranges in id order, a channel's replay, the head and the retention
watermark. Rows carry the event's data as the log's JSON text (`data_json`), passed through to
clients untouched."""

import asyncpg

from eventlog.tables import LEASE, LOG, WATERMARK

NOTIFY_CHANNEL = "api_events"
"""PostgreSQL NOTIFY channel: one notification per batch the sequencer commits (without NATS),
its highest event id."""

END_OF_LOG = 2**63 - 1
"""An upper bound above every id, for reading to the end."""

_COLUMNS = "id, channel, type, data::text AS data_json, actor_id, created_at"
_RANGE = f"SELECT {_COLUMNS} FROM {LOG} WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3"
_REPLAY = (
    f"SELECT {_COLUMNS} FROM {LOG}"
    " WHERE channel = ANY($1) AND id > $2 AND id <= $3 ORDER BY id LIMIT $4"
)
_HEAD = f"SELECT sequenced_through FROM {LEASE}"
_BOUNDS = f"SELECT pruned_through, (SELECT coalesce(max(id), 0) FROM {LOG}) FROM {WATERMARK}"


async def read_range(
    connection: asyncpg.Connection, after: int, through: int, limit: int
) -> list[asyncpg.Record]:
    """At most `limit` events with ids in (after, through], oldest first."""
    rows: list[asyncpg.Record] = await connection.fetch(_RANGE, after, through, limit)
    return rows


async def read_channels(
    connection: asyncpg.Connection, channels: list[str], after: int, through: int, limit: int
) -> list[asyncpg.Record]:
    """At most `limit` events on `channels` with ids in (after, through], oldest first."""
    rows: list[asyncpg.Record] = await connection.fetch(_REPLAY, channels, after, through, limit)
    return rows


async def head(connection: asyncpg.Connection) -> int:
    """The highest id in the log (the sequencer's `sequenced_through`)."""
    through: int = await connection.fetchval(_HEAD)
    return through


async def bounds(connection: asyncpg.Connection) -> tuple[int, int]:
    """(pruned_through, newest): a cursor below the first has missed pruned events; the second
    is the highest id still in the log."""
    row = await connection.fetchrow(_BOUNDS)
    assert row is not None
    return int(row[0]), int(row[1])
