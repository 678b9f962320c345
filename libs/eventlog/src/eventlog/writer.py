"""Appending events: every write inserts its events into the inbox in its own transaction,
tagged with the transaction's id (the column default `pg_current_xact_id()`), and does nothing
else: no lock, no NOTIFY, so event-writing transactions never wait for each other. The
sequencer (eventlog.sequencer) later moves settled inbox rows into the log, numbering them;
readers see only the log.

Three paths, one after-commit: once the transaction that wrote events commits, they are counted
in `api_events_written_total` and this process's listeners (its sequencer) are told, whichever
path wrote them, without the caller doing anything:
- `append_events` on a request's asyncpg `Connection` (servicekit.db), through its
  `after_commit`;
- `append_events` on an ORM `AsyncSession`, through the session's `after_commit` event;
- `appending_events` inside one statement (a CTE), built with `statement_appending`, whose
  `Statement.committed` hook the statement's runner calls.
"""

import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy import String, bindparam, event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from eventlog.tables import INBOX
from eventlog.types import EVENT_TYPES, EVENTS_WRITTEN, EventType
from servicekit.db import Connection, Statement

__all__ = [
    "Event",
    "append_events",
    "appending_events",
    "on_events_committed",
    "statement_appending",
    "type_param",
]


@dataclass(frozen=True, slots=True)
class Event:
    """The envelope a writer hands in: the log adds the id, the actor and the time."""

    channel: str
    type: EventType
    data: dict[str, Any]


def appending_events(new_events: str) -> str:
    """SQL for the CTE `appended` that inserts the rows of the CTE `new_events` (columns
    `channel`, `type`, `data` jsonb, `n` for their order) into the inbox as events by
    `:actor_id`; it returns the type of each event written. The statement's final select must
    include `APPENDED_TYPES`, and the statement be built with `statement_appending`."""
    return f"""
        appended AS (
            INSERT INTO {INBOX} (channel, type, data, actor_id)
            SELECT e.channel, e.type, e.data, CAST(:actor_id AS uuid)
            FROM {new_events} AS e
            ORDER BY e.n
            RETURNING type
        )"""


APPENDED_TYPES = "(SELECT array_agg(type) FROM appended) AS appended_types"
"""The column of a statement's final select that tells its after-commit what it wrote."""


def type_param(event_type: EventType) -> str:
    """The bound parameter that stands for `event_type` in a statement's SQL (`:<name>`): a
    statement names a type only through its registered value."""
    return "event_type_" + re.sub(r"\W", "_", event_type.name)


def statement_appending(clause: TextClause, types: Iterable[EventType]) -> Statement:
    """A single statement that writes events of `types` through `appending_events`, compiled,
    with their values bound and the after-commit attached (run by servicekit.db's runners)."""
    binds = []
    for event_type in types:
        EVENT_TYPES.check(event_type)
        binds.append(bindparam(type_param(event_type), event_type.name, type_=String))
    return Statement.of(clause.bindparams(*binds), committed=_statement_committed)


def _statement_committed(row: asyncpg.Record) -> None:
    types: list[str] | None = row["appended_types"]
    if types:
        events_committed(types)


_APPEND = text(
    f"""
    WITH new_events AS (
        SELECT e ->> 'channel' AS channel, e ->> 'type' AS type, e -> 'data' AS data, n
        FROM jsonb_array_elements(CAST(:events AS jsonb)) WITH ORDINALITY AS x(e, n)
    ),
    {appending_events("new_events")}
    SELECT count(*) FROM appended
    """
)
_APPEND_COMPILED = Statement.of(_APPEND)


def _payload(events: Sequence[Event]) -> tuple[str, list[str]]:
    for e in events:
        EVENT_TYPES.check(e.type)
    payload = json.dumps(
        [{"channel": e.channel, "type": e.type.name, "data": e.data} for e in events], default=str
    )
    return payload, [e.type.name for e in events]


async def append_events(
    db: Connection | AsyncSession, actor_id: uuid.UUID, events: Sequence[Event]
) -> None:
    """Append events to the inbox, in the caller's transaction: they reach the log when it
    has committed (and are never seen if it rolls back). Refuses an undeclared type."""
    payload, types = _payload(events)
    if isinstance(db, AsyncSession):
        await db.execute(_APPEND, {"actor_id": str(actor_id), "events": payload})
        db.info.setdefault(_SESSION_PENDING, []).extend(types)
    else:
        await db.fetchval(_APPEND_COMPILED, actor_id=str(actor_id), events=payload)
        db.after_commit(partial(events_committed, types))


# The ORM path: the types written are kept on the session until its transaction ends.
_SESSION_PENDING = "eventlog.pending_types"


@event.listens_for(Session, "after_commit")
def _session_committed(session: Session) -> None:
    types: list[str] | None = session.info.pop(_SESSION_PENDING, None)
    if types:
        events_committed(types)


@event.listens_for(Session, "after_rollback")
def _session_rolled_back(session: Session) -> None:
    session.info.pop(_SESSION_PENDING, None)


# Called after every commit that wrote events: this replica's sequencer, so that it moves them
# at once rather than at its next poll (eventlog.sequencer).
_commit_listeners: set[Callable[[], None]] = set()


def on_events_committed(listener: Callable[[], None]) -> Callable[[], None]:
    """Call `listener` after each commit in this process that wrote events; returns the call
    that stops it."""
    _commit_listeners.add(listener)
    return lambda: _commit_listeners.discard(listener)


def events_committed(types: Iterable[str]) -> None:
    """After a commit that wrote events of `types`: count them and tell the listeners. Called
    by the three paths above, never by their callers."""
    for event_type in types:
        EVENTS_WRITTEN.labels(type=event_type).inc()
    for listener in list(_commit_listeners):
        listener()
