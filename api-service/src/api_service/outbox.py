"""The event outbox, writer side: every write inserts its events into the inbox in its own
transaction, tagged with the transaction's id (the column default `pg_current_xact_id()`), and
does nothing else: no lock, no NOTIFY, so event-writing transactions never wait for each other.

The sequencer (api_service.sequencer) later moves settled inbox rows into the log `api.events`,
numbering them; readers see only the log.
"""

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit.db import Connection, Statement

logger = logging.getLogger(__name__)

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

_PRUNE_LOCK = 0x7072756E65  # "prune"
_PRUNE_BATCH = 10_000

EVENTS_WRITTEN = Counter("api_events_written", "Events committed to the outbox", ["type"])
for event_type in EVENT_TYPES:
    EVENTS_WRITTEN.labels(type=event_type)


def appending_events(new_events: str) -> str:
    """SQL for the CTE `appended` that inserts the rows of the CTE `new_events` (columns
    `channel`, `type`, `data` jsonb, `n` for their order) into the inbox as events by
    `:actor_id`; it returns one row per event written."""
    return f"""
        appended AS (
            INSERT INTO api.event_inbox (channel, type, data, actor_id)
            SELECT e.channel, e.type, e.data, CAST(:actor_id AS uuid)
            FROM {new_events} AS e
            ORDER BY e.n
            RETURNING seq
        )"""


_APPEND_EVENTS = Statement.of(
    text(
        f"""
        WITH new_events AS (
            SELECT e ->> 'channel' AS channel, e ->> 'type' AS type, e -> 'data' AS data, n
            FROM jsonb_array_elements(CAST(:events AS jsonb)) WITH ORDINALITY AS x(e, n)
        ),
        {appending_events("new_events")}
        SELECT count(*) FROM appended
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
    """Append events to the inbox, in the caller's transaction: they reach the log when it
    has committed (and are never seen if it rolls back)."""
    payload = json.dumps(
        [{"channel": e.channel, "type": e.type, "data": e.data} for e in events], default=str
    )
    await db.fetchval(_APPEND_EVENTS, actor_id=str(actor_id), events=payload)
    types = [e.type for e in events]
    db.after_commit(lambda: events_committed(types))


# Called after every commit that wrote events: this replica's sequencer, so that it moves them
# at once rather than at its next poll (api_service.sequencer).
_commit_listeners: set[Callable[[], None]] = set()


def on_events_committed(listener: Callable[[], None]) -> Callable[[], None]:
    """Call `listener` after each commit in this process that wrote events; returns the call
    that stops it."""
    _commit_listeners.add(listener)
    return lambda: _commit_listeners.discard(listener)


def events_committed(types: list[str]) -> None:
    """After a commit that wrote events of `types`: count them in `api_events_written_total`
    and tell the listeners."""
    for event_type in types:
        EVENTS_WRITTEN.labels(type=event_type).inc()
    for listener in list(_commit_listeners):
        listener()


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
