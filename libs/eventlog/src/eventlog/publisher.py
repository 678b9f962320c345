"""Publishing committed batches on the NATS event bus (eventlog.bus holds the wire
contract realtime-service reads)."""

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from nats.aio.client import Client
from nats.errors import Error as NatsError

from eventlog.bus import HEAD_SUBJECT, BusEvent, channel_subject, connect
from servicekit.supervisor import Heartbeat

logger = logging.getLogger(__name__)


def _bus_event(row: asyncpg.Record) -> BusEvent:
    return {
        "id": row["id"],
        "channel": row["channel"],
        "type": row["type"],
        "data_json": row["data_json"],
        "actor_id": str(row["actor_id"]),
        "created_at": row["created_at"].isoformat(),
    }


class NatsBatchBus:
    """The sequencer's publisher. Connects in the background and keeps reconnecting; what it
    cannot publish is lost on the bus, never in the log."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: Client | None = None

    async def run(self, heartbeat: Heartbeat) -> None:
        """Connect (nats-py retries until the server answers, and reconnects by itself
        afterwards), then beat every second while connected; until cancelled (supervised)."""
        if self._client is None or self._client.is_closed:
            self._client = await connect(self._url, "api-sequencer")
        while True:
            if self._client.is_connected:
                heartbeat.beat()
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._client is not None and not self._client.is_closed:
            await self._client.close()

    async def publish_batch(self, events: Sequence[asyncpg.Record]) -> None:
        if not events:
            return
        first, last = events[0]["id"], events[-1]["id"]
        by_channel: dict[str, list[BusEvent]] = {}
        for row in events:
            by_channel.setdefault(row["channel"], []).append(_bus_event(row))
        for channel, channel_events in by_channel.items():
            payload = {"first": first, "last": last, "events": channel_events}
            await self._publish(channel_subject(channel), payload)
        await self.publish_head(last)

    async def publish_head(self, through: int) -> None:
        await self._publish(HEAD_SUBJECT, {"through": through})

    async def _publish(self, subject: str, payload: dict[str, Any]) -> None:
        client = self._client
        if client is None or client.is_closed:
            return
        try:
            await client.publish(subject, json.dumps(payload, separators=(",", ":")).encode())
        except (NatsError, OSError) as exc:
            logger.warning("NATS publish failed", extra={"err": repr(exc)})
