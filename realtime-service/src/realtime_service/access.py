"""Who may read or publish on a channel, decided by api-service's own membership table.

realtime reads `api.members` in the shared database instead of asking api-service over HTTP:
it is the authoritative, transactional source, a read costs one indexed lookup, and removals
reach live connections through the `member.removed` event in the log (see hub.py).
"""

import uuid

import asyncpg

from realtime_service.events import parse_channel

_ROLE = "SELECT role FROM api.members WHERE board_id = $1 AND user_id = $2"
PUBLISHERS = frozenset({"owner", "editor"})


async def can_read(connection: asyncpg.Connection, user_id: uuid.UUID, channel: str) -> bool:
    kind, ident = parse_channel(channel)
    if kind == "user":
        return ident == user_id
    return await connection.fetchval(_ROLE, ident, user_id) is not None


async def can_publish(connection: asyncpg.Connection, user_id: uuid.UUID, channel: str) -> bool:
    kind, ident = parse_channel(channel)
    if kind != "board":
        return False
    return await connection.fetchval(_ROLE, ident, user_id) in PUBLISHERS
