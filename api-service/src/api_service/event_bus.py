"""Publishing committed batches on core NATS (at most once: the log stays the only durable
record; realtime nodes repair what they miss from it).

The wire contract, shared with realtime-service's bus module:
- subject `events.<kind>.<id>` per channel `<kind>:<id>`: JSON `{"first", "last", "events"}`,
  the events of one channel in one batch, oldest first, each `{"id", "channel", "type",
  "data_json" (the data as the log's JSON text), "actor_id", "created_at" (ISO 8601)}`, and
  `first`/`last` the id range of the whole batch;
- subject `events.head`: JSON `{"through": N}`, the log's highest id, after every batch and on
  every lease renewal (a heartbeat: a node that lost the end of a burst learns it here).
A batch's messages are published in id order from one connection, so a node subscribed to
`events.>` receives them in that order, and ids are dense: anything it expected and did not
get is a gap it can read from the log.
"""

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

logger = logging.getLogger(__name__)

HEAD_SUBJECT = "events.head"


def channel_subject(channel: str) -> str:
    return "events." + channel.replace(":", ".", 1)


def _event_json(row: asyncpg.Record) -> dict[str, Any]:
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
        self._connecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._connecting = asyncio.create_task(self._connect(), name="nats-connect")

    async def _connect(self) -> None:
        while True:
            try:
                self._client = await nats.connect(
                    self._url,
                    name="api-sequencer",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    error_cb=_log_error,
                )
                return
            except (OSError, NatsError, TimeoutError) as exc:
                logger.warning("NATS connect failed", extra={"err": repr(exc)})
                await asyncio.sleep(1)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._client is not None and not self._client.is_closed:
            await self._client.close()

    async def publish_batch(self, events: Sequence[asyncpg.Record]) -> None:
        if not events:
            return
        first, last = events[0]["id"], events[-1]["id"]
        by_channel: dict[str, list[dict[str, Any]]] = {}
        for row in events:
            by_channel.setdefault(row["channel"], []).append(_event_json(row))
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


async def _log_error(exc: Exception) -> None:
    logger.warning("NATS error", extra={"err": repr(exc)})
