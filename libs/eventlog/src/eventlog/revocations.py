"""Users whose access tokens stop working before they expire: deactivated accounts, and accounts
whose sessions were all ended by a password reset.

auth-service appends `user.deactivated`, `user.reactivated` and `user.sessions_revoked` events
(channel `user:<id>`) to the event log in the transaction that makes the change. The types are
declared here, not in auth-service: they are the contract between the service that emits them
and every resource server that honours them (docs/contract.md §6). Resource servers
follow the log and keep each revocation in memory for as long as a token issued before it could
still verify (`revocation_window_seconds`: the access-token lifetime plus leeway), then forget it.
"""

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from eventlog.tables import LEASE, LOG
from eventlog.types import EventType, declare
from servicekit.db import Database
from servicekit.outage import is_database_unavailable, outage
from servicekit.supervisor import Heartbeat

logger = logging.getLogger(__name__)

DEACTIVATED = declare("user.deactivated")
REACTIVATED = declare("user.reactivated")
SESSIONS_REVOKED = declare("user.sessions_revoked")
REVOCATION_TYPES: tuple[EventType, ...] = (DEACTIVATED, REACTIVATED, SESSIONS_REVOKED)
_REVOCATION_NAMES = [t.name for t in REVOCATION_TYPES]

_HEAD = f"SELECT sequenced_through FROM {LEASE}"
# Called once at start: revocations still in force, up to the head read just before.
_RECENT = (
    f"SELECT type, data::text AS data_json, created_at FROM {LOG}"
    " WHERE type = ANY($1) AND created_at > now() - make_interval(secs => $2) AND id <= $3"
    " ORDER BY id"
)
# Each poll: the new part of the log only, (cursor, head], by its primary key.
_BETWEEN = (
    f"SELECT type, data::text AS data_json, created_at FROM {LOG}"
    " WHERE id > $1 AND id <= $2 AND type = ANY($3) ORDER BY id"
)


def is_revocation(event_type: str) -> bool:
    return event_type in _REVOCATION_NAMES


@dataclass(frozen=True, slots=True)
class Revocation:
    issued_before: float
    """Tokens issued (`iat`) before this are refused; infinity for a deactivated account."""
    forget_at: float


class RevokedUsers:
    """A bounded map from user id to the revocation in force for that user."""

    def __init__(self, window_seconds: float, max_entries: int = 100_000) -> None:
        self.window_seconds = window_seconds
        self.max_entries = max_entries
        self._entries: dict[uuid.UUID, Revocation] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def apply(
        self, event_type: str, data: Mapping[str, Any], created_at: float
    ) -> uuid.UUID | None:
        """Record one revocation event; the user it concerns (None for anything else)."""
        try:
            user_id = uuid.UUID(str(data["user_id"]))
        except (KeyError, ValueError):
            logger.warning("revocation event without a user id ignored")
            return None
        if event_type == REACTIVATED.name:
            if user_id not in self._entries:
                return user_id
            # Deactivation ended every session: a token issued before it stays refused. None
            # was issued while the account was deactivated, so the reactivation's time is the
            # bound.
            issued_before = float(data.get("issued_before", created_at))
        elif event_type == DEACTIVATED.name:
            issued_before = math.inf
        elif event_type == SESSIONS_REVOKED.name:
            issued_before = float(data.get("issued_before", created_at))
        else:
            return None
        if len(self._entries) >= self.max_entries and user_id not in self._entries:
            # Expired entries go only when room is needed: a scan per event would make a burst
            # of revocations quadratic. (is_revoked drops an expired entry it meets.)
            self._prune()
            if len(self._entries) >= self.max_entries:
                # Oldest first (dicts keep insertion order); only a flood of revocations gets here.
                del self._entries[next(iter(self._entries))]
                logger.warning("revoked-user set full: the oldest entry was dropped")
        self._entries.pop(user_id, None)
        self._entries[user_id] = Revocation(issued_before, created_at + self.window_seconds)
        return user_id

    def is_revoked(self, user_id: uuid.UUID, issued_at: float) -> bool:
        entry = self._entries.get(user_id)
        if entry is None:
            return False
        if entry.forget_at < time.time():
            del self._entries[user_id]
            return False
        return issued_at < entry.issued_before

    def is_deactivated(self, user_id: uuid.UUID) -> bool:
        entry = self._entries.get(user_id)
        return entry is not None and entry.issued_before == math.inf

    def _prune(self) -> None:
        now = time.time()
        for user_id in [u for u, e in self._entries.items() if e.forget_at < now]:
            del self._entries[user_id]


def _apply_rows(revoked: RevokedUsers, rows: list[asyncpg.Record]) -> None:
    for row in rows:
        created_at: datetime = row["created_at"]
        revoked.apply(row["type"], json.loads(row["data_json"]), created_at.timestamp())


async def load_revocations(connection: asyncpg.Connection, revoked: RevokedUsers) -> int:
    """Fill `revoked` with the revocations still in force; the log position it covers."""
    head: int = await connection.fetchval(_HEAD)
    rows = await connection.fetch(_RECENT, _REVOCATION_NAMES, revoked.window_seconds, head)
    _apply_rows(revoked, rows)
    return head


async def read_revocations(
    connection: asyncpg.Connection, revoked: RevokedUsers, cursor: int
) -> int:
    """Apply the revocations logged after `cursor`; the new cursor."""
    head: int = await connection.fetchval(_HEAD)
    if head > cursor:
        _apply_rows(revoked, await connection.fetch(_BETWEEN, cursor, head, _REVOCATION_NAMES))
    return max(head, cursor)


async def follow_revocations(
    database: Database, revoked: RevokedUsers, interval: float, heartbeat: Heartbeat | None = None
) -> None:
    """Keep `revoked` up to date from the log, polling every `interval` seconds, until
    cancelled; `heartbeat` beats after every read. For a service that does not otherwise
    follow the log (api-service); the realtime hub applies revocations as it dispatches
    events."""
    cursor: int | None = None
    while True:
        try:
            async with database.acquire() as connection:
                if cursor is None:
                    cursor = await load_revocations(connection, revoked)
                else:
                    cursor = await read_revocations(connection, revoked, cursor)
            if heartbeat is not None:
                heartbeat.beat()
        except Exception as exc:
            # Whatever went wrong (an outage, most likely), the loop must go on: a follower
            # that stopped would silently let revoked users back in.
            if is_database_unavailable(exc):
                outage.began(exc)  # logged once per outage, not once per poll
            else:
                logger.warning("reading revocations failed", extra={"err": repr(exc)})
        await asyncio.sleep(interval)
