"""Ephemeral messages between replicas: a WebSocket publish goes out as one `pg_notify` on
`realtime_messages`, and every replica's listener (realtime_service.log_follower) hands it to
its fan-out. Never stored."""

import json
import logging
from typing import Any

import asyncpg

from realtime_service.events import Ephemeral

logger = logging.getLogger(__name__)

MESSAGES_CHANNEL = "realtime_messages"


async def publish_message(connection: asyncpg.Connection, message: dict[str, Any]) -> None:
    await connection.execute("SELECT pg_notify($1, $2)", MESSAGES_CHANNEL, json.dumps(message))


def decode_message(payload: str) -> Ephemeral | None:
    """The message as its channel's subscribers receive it; None (logged) when malformed."""
    try:
        message = json.loads(payload)
        channel, sender = message["channel"], message["sender"]
        wire = json.dumps(
            {
                "type": "message",
                "channel": channel,
                "from": message["from"],
                "data": message["data"],
            }
        )
    except (ValueError, KeyError, TypeError):
        logger.warning("malformed ephemeral message ignored")
        return None
    return Ephemeral(channel=channel, sender=sender, ws=wire)
