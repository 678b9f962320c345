"""The process's one reader of the outbox and its fan-out to connections.

One dedicated connection LISTENs for wake-ups (`api_events` from api-service, and
`realtime_messages` for ephemeral messages between replicas). Each wake-up, and a poll every
`poll_interval_seconds` (notifications are lost while the LISTEN connection is down), runs one
query `id > cursor` however many clients there are; each event is then handed to the
subscribers of its channel. Ids increase in commit order (see api_service.outbox), so the
cursor never skips an event.
"""

import asyncio
import contextlib
import json
import logging
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from realtime_service.events import Ephemeral, LogEvent
from servicekit.db import Database

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "api_events"
MESSAGES_CHANNEL = "realtime_messages"
_BATCH = 500

_SELECT_AFTER = (
    "SELECT id, channel, type, data::text AS data_json, actor_id, created_at"
    " FROM api.events WHERE id > $1 ORDER BY id LIMIT $2"
)
_SELECT_REPLAY = (
    "SELECT id, channel, type, data::text AS data_json, actor_id, created_at"
    " FROM api.events WHERE channel = ANY($1) AND id > $2 AND id <= $3 ORDER BY id LIMIT $4"
)

Item = LogEvent | Ephemeral


class Subscriber:
    """One client connection's view of the hub: its channels and a bounded queue.

    The queue is bounded so that a client that stops reading cannot grow memory: when it is
    full the subscriber is closed with 4002 and the client resumes from its last event id.
    """

    def __init__(self, user_id: uuid.UUID, transport: str, queue_limit: int) -> None:
        self.id = uuid.uuid4().hex
        self.user_id = user_id
        self.transport = transport
        self.channels: set[str] = set()
        self.revoked: list[str] = []
        self.close_reason: tuple[int, str] | None = None
        self._queue: deque[Item] = deque()
        self._queue_limit = queue_limit
        self._wake = asyncio.Event()

    def push(self, item: Item) -> None:
        if self.close_reason is not None:
            return
        if len(self._queue) >= self._queue_limit:
            self._queue.clear()
            self.close(4002, "too slow: reconnect and resume from your last event id")
            return
        self._queue.append(item)
        self._wake.set()

    def revoked_from(self, channel: str) -> None:
        self.revoked.append(channel)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = (code, reason)
            self._wake.set()

    async def wait(self, max_seconds: float) -> None:
        """Until something is queued, a channel is revoked, the subscriber is closed, or
        `max_seconds` have passed."""
        if not self._queue and not self.revoked and self.close_reason is None:
            # asyncio.timeout, not wait_for: wait_for makes a task per call, and this runs
            # once per delivery per connection.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max_seconds):
                    await self._wake.wait()
        self._wake.clear()

    def take(self) -> list[Item]:
        items = list(self._queue)
        self._queue.clear()
        return items

    def take_revoked(self) -> list[str]:
        revoked, self.revoked = self.revoked, []
        return revoked


class Hub:
    def __init__(self, dsn: str, poll_interval: float) -> None:
        self._dsn = dsn
        self._poll_interval = poll_interval
        self.cursor = 0
        self.subscribers: set[Subscriber] = set()
        self._by_channel: dict[str, set[Subscriber]] = defaultdict(set)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncpg.Connection | None = None
        self.listening = False

    async def start(self) -> None:
        self._reader = await asyncpg.connect(self._dsn)
        self.cursor = await self._reader.fetchval("SELECT coalesce(max(id), 0) FROM api.events")
        self._tasks = [
            asyncio.create_task(self._listen(), name="hub-listen"),
            asyncio.create_task(self._tail(), name="hub-tail"),
        ]

    async def ensure_listening(self) -> None:
        """A readiness check: raises while the LISTEN connection is down."""
        if not self.listening:
            raise RuntimeError("not listening for outbox notifications")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._reader is not None:
            await self._reader.close()

    # Subscriptions. Registering and reading the cursor happen without an await between them,
    # so every event above the returned cursor reaches the subscriber live.

    def subscribe(self, subscriber: Subscriber, channel: str) -> int:
        self.subscribers.add(subscriber)
        subscriber.channels.add(channel)
        self._by_channel[channel].add(subscriber)
        return self.cursor

    def unsubscribe(self, subscriber: Subscriber, channel: str) -> None:
        subscriber.channels.discard(channel)
        members = self._by_channel.get(channel)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self._by_channel[channel]

    def _revoke(self, subscriber: Subscriber, channel: str) -> None:
        self.unsubscribe(subscriber, channel)
        subscriber.revoked_from(channel)

    def remove(self, subscriber: Subscriber) -> None:
        for channel in list(subscriber.channels):
            self.unsubscribe(subscriber, channel)
        self.subscribers.discard(subscriber)

    def close_all(self, code: int, reason: str) -> None:
        for subscriber in list(self.subscribers):
            subscriber.close(code, reason)

    async def replay(
        self, database: Database, channels: list[str], after: int, through: int
    ) -> AsyncIterator[list[LogEvent]]:
        """The events on `channels` with ids in (after, through], oldest first, in batches: a
        cursor days old must not load the whole log, nor hold a pooled connection while a
        slow client takes its batches."""
        while True:
            async with database.acquire() as connection:
                rows = await connection.fetch(_SELECT_REPLAY, channels, after, through, _BATCH)
            if rows:
                yield [LogEvent.from_row(**row) for row in rows]
            if len(rows) < _BATCH:
                return
            after = rows[-1]["id"]

    # Fan-out.

    def _dispatch(self, event: LogEvent) -> None:
        subscribers = self._by_channel.get(event.channel, ())
        if event.type == "member.removed" and event.channel.startswith("board:"):
            # The removed member gets nothing from this event on: access follows the log.
            removed = str(event.data.get("user_id"))
            for subscriber in list(subscribers):
                if str(subscriber.user_id) == removed:
                    self._revoke(subscriber, event.channel)
        for subscriber in list(subscribers):
            subscriber.push(event)
        if event.type == "board.deleted":
            for subscriber in list(self._by_channel.get(event.channel, ())):
                self._revoke(subscriber, event.channel)

    def _dispatch_message(self, payload: str) -> None:
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
            return
        item = Ephemeral(channel=channel, sender=sender, ws=wire)
        for subscriber in list(self._by_channel.get(channel, ())):
            if subscriber.transport == "ws" and subscriber.id != sender:
                subscriber.push(item)

    # The log reader.

    async def _tail(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            self._wake.clear()
            try:
                await self._read_new_events()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("outbox read failed", extra={"err": repr(exc)})
                await self._reconnect_reader()

    async def _read_new_events(self) -> None:
        assert self._reader is not None
        while True:
            rows = await self._reader.fetch(_SELECT_AFTER, self.cursor, _BATCH)
            for row in rows:
                self._dispatch(LogEvent.from_row(**row))
                self.cursor = row["id"]
            if len(rows) < _BATCH:
                return

    async def _reconnect_reader(self) -> None:
        if self._reader is not None:
            self._reader.terminate()
        while True:
            try:
                self._reader = await asyncpg.connect(self._dsn)
                return
            except (OSError, asyncpg.PostgresError) as exc:
                logger.warning("outbox reader reconnect failed", extra={"err": repr(exc)})
                await asyncio.sleep(self._poll_interval)

    async def _listen(self) -> None:
        on_event: Callable[..., None] = lambda *_: self._wake.set()  # noqa: E731
        on_message: Callable[..., None] = lambda *args: self._dispatch_message(args[3])  # noqa: E731
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self._dsn)
                await connection.add_listener(EVENTS_CHANNEL, on_event)
                await connection.add_listener(MESSAGES_CHANNEL, on_message)
                self.listening = True
                # Anything committed while we were not listening is found by reading now.
                self._wake.set()
                closed = asyncio.Event()
                connection.add_termination_listener(lambda _, done=closed: done.set())
                await closed.wait()
            except (OSError, asyncpg.PostgresError) as exc:
                logger.warning("LISTEN connection failed", extra={"err": repr(exc)})
            finally:
                self.listening = False
                if connection is not None and not connection.is_closed():
                    connection.terminate()
            await asyncio.sleep(self._poll_interval)

    async def publish(self, connection: asyncpg.Connection, message: dict[str, Any]) -> None:
        await connection.execute("SELECT pg_notify($1, $2)", MESSAGES_CHANNEL, json.dumps(message))
