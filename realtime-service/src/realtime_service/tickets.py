"""One-time tickets: EventSource and browser WebSockets cannot send an Authorization header,
and access tokens must not travel in URLs. A ticket is valid once, for a short time, on any
replica (it lives in the shared database), and only its hash is stored."""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

_ISSUE = (
    "WITH expired AS (DELETE FROM realtime.tickets WHERE expires_at < now())"
    " INSERT INTO realtime.tickets (ticket_hash, user_id, token_expires_at, expires_at)"
    " VALUES ($1, $2, $3, $4)"
)
_REDEEM = (
    "DELETE FROM realtime.tickets WHERE ticket_hash = $1 AND expires_at > now()"
    " RETURNING user_id, token_expires_at"
)


@dataclass(frozen=True)
class Identity:
    user_id: uuid.UUID
    expires_at: float
    """When the access token behind this identity expires (epoch seconds)."""


def _hash(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode()).digest()


async def issue_ticket(connection: asyncpg.Connection, identity: Identity, ttl_seconds: int) -> str:
    ticket = secrets.token_urlsafe(32)
    await connection.execute(
        _ISSUE,
        _hash(ticket),
        identity.user_id,
        datetime.fromtimestamp(identity.expires_at, UTC),
        datetime.now(UTC) + timedelta(seconds=ttl_seconds),
    )
    return ticket


async def redeem_ticket(connection: asyncpg.Connection, ticket: str) -> Identity | None:
    if not ticket or len(ticket) > 128:
        return None
    row = await connection.fetchrow(_REDEEM, _hash(ticket))
    if row is None:
        return None
    return Identity(row["user_id"], row["token_expires_at"].timestamp())
