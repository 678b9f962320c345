"""The event outbox: every write appends its events in its own transaction, and event ids
increase in commit order.

How: the events are inserted by the transaction's last statement, which first takes a
transaction-level advisory lock. The lock is held from the moment ids are drawn from the
sequence until the transaction has committed (or rolled back), so no two writers hold ids at
the same time: when a writer draws id N, every transaction that drew a smaller id has already
finished. A reader that sees N can therefore never later find a committed id below N. The
price is that commits carrying events are serialised: throughput is bounded by one
insert-plus-commit round trip at a time (see the README's design notes).
"""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit.db import Connection, Statement

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "api_events"
"""PostgreSQL NOTIFY channel; the payload is the highest event id of the committed transaction."""

EVENT_TYPES = (
    "board.updated",
    "board.deleted",
    "member.added",
    "member.updated",
    "member.removed",
    "task.created",
    "task.updated",
    "task.deleted",
)

_COMMIT_ORDER_LOCK = 0x6F7574626F78  # "outbox"
_PRUNE_LOCK = 0x7072756E65  # "prune"
_PRUNE_BATCH = 10_000

EVENTS_WRITTEN = Counter("api_events_written", "Events committed to the outbox", ["type"])
for event_type in EVENT_TYPES:
    EVENTS_WRITTEN.labels(type=event_type)


def appending_events(new_events: str) -> str:
    """SQL for the CTEs that append the rows of the CTE `new_events` (columns `channel`, `type`,
    `data` jsonb, `n` for their order) as events by `:actor_id`, under the commit-order lock.
    The CTE `appended` holds the new ids, `notified` the NOTIFY of the highest one; the
    statement must read `notified`, since a CTE that is not read does not run."""
    return f"""
        commit_order AS (
            SELECT pg_advisory_xact_lock({_COMMIT_ORDER_LOCK})
            WHERE EXISTS (SELECT FROM {new_events})
        ),
        appended AS (
            INSERT INTO api.events (channel, type, data, actor_id)
            SELECT e.channel, e.type, e.data, CAST(:actor_id AS uuid)
            FROM commit_order, {new_events} AS e
            ORDER BY e.n
            RETURNING id
        ),
        notified AS (
            SELECT pg_notify('{NOTIFY_CHANNEL}', max(id)::text) FROM appended HAVING count(*) > 0
        )"""


_APPEND_EVENTS = Statement.of(
    text(
        f"""
        WITH new_events AS (
            SELECT e ->> 'channel' AS channel, e ->> 'type' AS type, e -> 'data' AS data, n
            FROM jsonb_array_elements(CAST(:events AS jsonb)) WITH ORDINALITY AS x(e, n)
        ),
        {appending_events("new_events")}
        SELECT count(*) FROM notified
        """
    )
)


@dataclass(frozen=True, slots=True)
class Event:
    channel: str
    type: str
    data: dict[str, Any]


def board_channel(board_id: uuid.UUID) -> str:
    return f"board:{board_id}"


def user_channel(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


async def append_events(db: Connection, actor_id: uuid.UUID, events: list[Event]) -> None:
    """Append events to the outbox. Call it as the transaction's last statement: the
    commit-order lock it takes is held until commit, so anything after it lengthens the
    serialised section."""
    payload = json.dumps(
        [{"channel": e.channel, "type": e.type, "data": e.data} for e in events], default=str
    )
    await db.fetchval(_APPEND_EVENTS, actor_id=str(actor_id), events=payload)
    types = [e.type for e in events]
    db.after_commit(lambda: count_written(types))


def count_written(types: list[str]) -> None:
    """Count committed events in `api_events_written_total`."""
    for event_type in types:
        EVENTS_WRITTEN.labels(type=event_type).inc()


async def prune_events(engine: AsyncEngine, retention: timedelta) -> int:
    """Delete events older than `retention`, in batches; a no-op unless this replica wins the
    prune lock, so one replica prunes at a time."""
    deleted = 0
    while True:
        async with engine.begin() as conn:
            if not await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _PRUNE_LOCK}
            ):
                return deleted
            result = await conn.execute(
                text(
                    "WITH pruned AS (DELETE FROM api.events WHERE id IN (SELECT id FROM api.events"
                    " WHERE created_at < now() - CAST(:retention AS interval)"
                    " ORDER BY id LIMIT :batch) RETURNING id)"
                    " UPDATE api.outbox_state SET pruned_through ="
                    " GREATEST(pruned_through, (SELECT max(id) FROM pruned))"
                    " WHERE EXISTS (SELECT 1 FROM pruned)"
                    " RETURNING (SELECT count(*) FROM pruned)"
                ),
                {"retention": retention, "batch": _PRUNE_BATCH},
            )
            batch_deleted = result.scalar() or 0
        deleted += batch_deleted
        if batch_deleted < _PRUNE_BATCH:
            return deleted
