"""Channel kinds: each is one entry of `KINDS`, a name with the rules for who may read it and
who may publish on it. A channel is `<kind>:<uuid>`; a new kind is a new entry.

Membership of a board is read through api-service's contract function `api.board_role`
(docs/contract.md §5), never its tables: one indexed lookup on the transactional truth, so a
change of membership is seen by the next check at once; removals reach live connections through
the `member.removed` event (realtime_service.access_policy).
"""

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

# (connection, user, the channel's id) -> allowed
AccessRule = Callable[[asyncpg.Connection, uuid.UUID, uuid.UUID], Awaitable[bool]]

_BOARD_ROLE = "SELECT api.board_role($1, $2)"
BOARD_PUBLISHERS = frozenset({"owner", "editor"})


@dataclass(frozen=True, slots=True)
class ChannelKind:
    name: str
    can_read: AccessRule
    can_publish: AccessRule


async def _is_board_member(
    connection: asyncpg.Connection, user: uuid.UUID, board: uuid.UUID
) -> bool:
    return await connection.fetchval(_BOARD_ROLE, board, user) is not None


async def _is_board_writer(
    connection: asyncpg.Connection, user: uuid.UUID, board: uuid.UUID
) -> bool:
    return await connection.fetchval(_BOARD_ROLE, board, user) in BOARD_PUBLISHERS


async def _is_that_user(_: asyncpg.Connection, user: uuid.UUID, channel_user: uuid.UUID) -> bool:
    return user == channel_user


async def _nobody(_: asyncpg.Connection, __: uuid.UUID, ___: uuid.UUID) -> bool:
    return False


KINDS: dict[str, ChannelKind] = {
    kind.name: kind
    for kind in (
        # A board's events, to its members; its members who may write may also publish.
        ChannelKind("board", can_read=_is_board_member, can_publish=_is_board_writer),
        # A user's own events (memberships, revocations), to that user only; no messages.
        ChannelKind("user", can_read=_is_that_user, can_publish=_nobody),
    )
}

_CHANNEL = re.compile(r"([a-z]+):(.+)")


class InvalidChannel(ValueError):
    pass


def parse_channel(raw: str) -> tuple[ChannelKind, uuid.UUID]:
    """`<kind>:<uuid>` for a kind of `KINDS`, returned as (kind, id)."""
    matched = _CHANNEL.fullmatch(raw.strip())
    kind = KINDS.get(matched.group(1)) if matched is not None else None
    if matched is None or kind is None:
        raise InvalidChannel(f"not a channel: {raw[:80]!r}")
    try:
        return kind, uuid.UUID(matched.group(2))
    except ValueError as exc:
        raise InvalidChannel(f"not a channel: {raw[:80]!r}") from exc


def channel_name(kind: ChannelKind, ident: uuid.UUID) -> str:
    return f"{kind.name}:{ident}"


async def can_read(connection: asyncpg.Connection, user_id: uuid.UUID, channel: str) -> bool:
    kind, ident = parse_channel(channel)
    return await kind.can_read(connection, user_id, ident)


async def can_publish(connection: asyncpg.Connection, user_id: uuid.UUID, channel: str) -> bool:
    kind, ident = parse_channel(channel)
    return await kind.can_publish(connection, user_id, ident)
