"""The realtime end of the NATS event bus: one subscription to `events.>`, decoded into items
the hub handles in arrival order.

The wire contract is api-service's (api_service.event_bus): per-channel messages
`{"first", "last", "events"}` for each committed batch, then `events.head` `{"through"}`,
which the sequencer also repeats as a heartbeat. One subscription keeps the publisher's order,
and the log's ids are dense, so the hub knows which id comes next, whatever the channel.
"""

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from realtime_service.events import LogEvent
from realtime_service.metrics import BUS_CONNECTED

logger = logging.getLogger(__name__)

SUBJECTS = "events.>"
HEAD_SUBJECT = "events.head"


@dataclass(frozen=True, slots=True)
class BatchPart:
    """One channel's events of a batch whose ids run from `first` to `last`."""

    first: int
    last: int
    events: list[LogEvent]


@dataclass(frozen=True, slots=True)
class Head:
    """Every event up to `through` is in the log and has been published."""

    through: int


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The bus connection came back: anything published meanwhile was lost."""


BusItem = BatchPart | Head | Reconnected


def decode(subject: str, payload: bytes) -> BatchPart | Head:
    message = json.loads(payload)
    if subject == HEAD_SUBJECT:
        return Head(int(message["through"]))
    events = [
        LogEvent.from_row(
            id=int(e["id"]),
            channel=e["channel"],
            type=e["type"],
            data_json=e["data_json"],
            actor_id=uuid.UUID(e["actor_id"]),
            created_at=datetime.fromisoformat(e["created_at"]),
        )
        for e in message["events"]
    ]
    return BatchPart(int(message["first"]), int(message["last"]), events)


class EventBus:
    """Connects (and keeps reconnecting) to NATS and hands every item to `deliver`."""

    def __init__(self, url: str, deliver: Callable[[BusItem], None]) -> None:
        self._url = url
        self._deliver = deliver
        self._client: Client | None = None
        self.connected = False

    async def run(self) -> None:
        """Connect, retrying until it works; nats-py reconnects by itself afterwards."""
        while self._client is None:
            try:
                client = await nats.connect(
                    self._url,
                    name="realtime",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                )
                await client.subscribe(SUBJECTS, cb=self._on_message)
            except (OSError, NatsError, TimeoutError) as exc:
                logger.warning("NATS connect failed", extra={"err": repr(exc)})
                await asyncio.sleep(1)
                continue
            self._client = client
            self._set_connected(True)
            # Whatever was published before the subscription is read from the log.
            self._deliver(Reconnected())

    async def close(self) -> None:
        if self._client is not None and not self._client.is_closed:
            await self._client.close()
        self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        BUS_CONNECTED.set(1 if connected else 0)

    async def _on_message(self, message: Msg) -> None:
        try:
            item = decode(message.subject, message.data)
        except (ValueError, KeyError, TypeError):
            logger.warning("malformed bus message ignored")
            return
        self._deliver(item)

    async def _on_disconnected(self) -> None:
        self._set_connected(False)

    async def _on_reconnected(self) -> None:
        self._set_connected(True)
        self._deliver(Reconnected())

    async def _on_error(self, exc: Exception) -> None:
        logger.warning("NATS error", extra={"err": repr(exc)})
