"""The realtime end of the NATS event bus: one subscription to `events.>`, decoded into items
the hub handles in arrival order.

The wire contract is eventlog.bus: per-channel messages `{"first", "last", "events"}` for
each committed batch, then `events.head` `{"through"}`, which the sequencer also repeats as a
heartbeat. One subscription keeps the publisher's order, and the log's ids are dense, so the
hub knows which id comes next, whatever the channel.
"""

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from nats.aio.client import Client
from nats.aio.msg import Msg

from eventlog.bus import ALL_SUBJECTS, HEAD_SUBJECT, BusEvent, connect
from realtime_service.events import LogEvent
from realtime_service.metrics import BUS_CONNECTED
from servicekit.supervisor import Heartbeat

logger = logging.getLogger(__name__)


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
    bus_events: list[BusEvent] = message["events"]
    events = [
        LogEvent.from_row(
            id=int(e["id"]),
            channel=e["channel"],
            type=e["type"],
            data_json=e["data_json"],
            actor_id=uuid.UUID(e["actor_id"]),
            created_at=datetime.fromisoformat(e["created_at"]),
        )
        for e in bus_events
    ]
    return BatchPart(int(message["first"]), int(message["last"]), events)


class EventBus:
    """Connects (and keeps reconnecting) to NATS and hands every item to `deliver`."""

    def __init__(self, url: str, deliver: Callable[[BusItem], None]) -> None:
        self._url = url
        self._deliver = deliver
        self._client: Client | None = None
        self.connected = False

    async def run(self, heartbeat: Heartbeat) -> None:
        """Connect (retrying until the server answers) and subscribe, then beat every second
        while connected; until cancelled (supervised). nats-py reconnects and resubscribes by
        itself."""
        if self._client is not None:
            # A restart after a failure: a new client, so that the subscription is made anew.
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None
        client = await connect(
            self._url,
            "realtime",
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        await client.subscribe(ALL_SUBJECTS, cb=self._on_message)
        self._client = client
        self._set_connected(True)
        # Whatever was published before the subscription is read from the log.
        self._deliver(Reconnected())
        while True:
            if client.is_connected:
                heartbeat.beat()
            await asyncio.sleep(1.0)

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
