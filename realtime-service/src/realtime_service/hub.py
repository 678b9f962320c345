"""The process's one follower of the event log and its fan-out to connections.

The log's ids are dense and only ever appended in order (api-service's sequencer), so the
hub's `cursor` is exact: every event up to it has been dispatched, and the next is cursor + 1.
Events reach it one of two ways:
- PostgreSQL only (the default): one dedicated connection LISTENs for `api_events`, one
  notification per batch the sequencer commits. Each wake-up, and a poll every
  `poll_interval_seconds` (notifications are lost while the LISTEN connection is down), runs
  one query `id > cursor` however many clients there are.
- NATS (`NATS_URL` set): batches arrive on the bus (realtime_service.bus) and are dispatched
  in id order; the log is read only to repair a gap (an id that should have arrived and did
  not, found from the next message or the sequencer's head heartbeat), after a bus reconnect,
  and at start. So in steady state the database's reads do not grow with the number of nodes.
Either way, each event is handed to the subscribers of its channel. The LISTEN connection
also carries `realtime_messages`, ephemeral messages between replicas.
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
from nats.errors import Error as NatsError

from eventlog.reader import END_OF_LOG, read_channels, read_range
from eventlog.revocations import REACTIVATED, RevokedUsers, is_revocation, load_revocations
from realtime_service.bus import BatchPart, BusItem, EventBus, Head, Reconnected
from realtime_service.events import Ephemeral, LogEvent
from realtime_service.metrics import GAP_REPAIRS, LOG_QUERIES
from servicekit.db import CONNECTION_ERRORS, Database, session_settings
from servicekit.supervisor import Heartbeat, Supervisor

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "api_events"
MESSAGES_CHANNEL = "realtime_messages"
_BATCH = 500


Item = LogEvent | Ephemeral
_TIMER_RESOLUTION = 0.001
_KEEPALIVE_SECONDS = 2.0
_BUS_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, NatsError)


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
        self._waiting = False
        self._wake_at = 0.0
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0

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
            loop = asyncio.get_running_loop()
            self._wake_at = loop.time() + max_seconds
            # One timer per subscriber, kept across waits and moved only when it would fire
            # too late: this runs once per delivery per connection, and arming and cancelling
            # a timeout each time cost more than the rest of the wait.
            if self._timer is None or self._timer_at > self._wake_at:
                self._arm(loop, self._wake_at)
            self._waiting = True
            try:
                await self._wake.wait()
            finally:
                self._waiting = False
        self._wake.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        self.cancel_timer()
        self._timer_at = at
        self._timer = loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._waiting:
            return  # woken by an item meanwhile; the next wait arms a timer of its own
        loop = asyncio.get_running_loop()
        # uvloop keeps time in whole milliseconds, so a timer may fire up to 1 ms early: that
        # counts as on time (re-arming for the rest would spin until the clock ticks over).
        if loop.time() >= self._wake_at - _TIMER_RESOLUTION:
            self._wake.set()
        else:
            self._arm(loop, self._wake_at)

    def cancel_timer(self) -> None:
        """The connection has ended, or the timer is being moved: a pending timer would keep
        the subscriber (and what it has queued) alive until it fires."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def take(self) -> list[Item]:
        items = list(self._queue)
        self._queue.clear()
        return items

    def take_revoked(self) -> list[str]:
        revoked, self.revoked = self.revoked, []
        return revoked


REVOKED_CLOSE = (4401, "access revoked: the account was deactivated or its sessions ended")


class Hub:
    def __init__(
        self,
        dsn: str,
        poll_interval: float,
        nats_url: str | None = None,
        revoked: RevokedUsers | None = None,
    ) -> None:
        self._dsn = dsn
        # Users whose tokens were revoked, from the log (eventlog.revocations); shared with
        # the token verifier.
        self.revoked = revoked if revoked is not None else RevokedUsers(0)
        self._poll_interval = poll_interval
        self._bus_items: asyncio.Queue[BusItem] = asyncio.Queue()
        self._bus = EventBus(nats_url, self._bus_items.put_nowait) if nats_url else None
        self._pending: dict[int, LogEvent] = {}
        self.cursor = 0
        self.subscribers: set[Subscriber] = set()
        self._by_channel: dict[str, set[Subscriber]] = defaultdict(set)
        self._wake = asyncio.Event()
        # The background loops (listen, tail or bus and follow-bus), supervised.
        self.loops = Supervisor()
        self._reader: asyncpg.Connection | None = None
        self.listening = False

    async def start(self) -> None:
        self._reader = await asyncpg.connect(self._dsn, server_settings=session_settings())
        # The revocations still in force up to the head, which is where dispatch starts.
        self.cursor = await load_revocations(self._reader, self.revoked)
        LOG_QUERIES.labels(purpose="start").inc()
        # Each loop is stalled after `stale` without an iteration that answered: the listener
        # and the bus beat every `_KEEPALIVE_SECONDS`, the tail every poll, the bus follower
        # at least every second.
        stale = max(3 * _KEEPALIVE_SECONDS, 10 * self._poll_interval)
        self.loops.spawn("hub_listen", self._listen, stale_after=stale, transient=CONNECTION_ERRORS)
        if self._bus is None:
            self.loops.spawn("hub_tail", self._tail, stale_after=stale, transient=CONNECTION_ERRORS)
        else:
            self.loops.spawn("hub_bus", self._bus.run, stale_after=stale, transient=_BUS_ERRORS)
            self.loops.spawn(
                "hub_follow_bus", self._follow_bus, stale_after=stale, transient=CONNECTION_ERRORS
            )

    async def ensure_listening(self) -> None:
        """A readiness check: raises while the LISTEN connection (or the bus) is down."""
        if not self.listening:
            raise RuntimeError("not listening for outbox notifications")
        if self._bus is not None and not self._bus.connected:
            raise RuntimeError("not connected to the event bus")

    async def stop(self) -> None:
        await self.loops.stop()
        if self._bus is not None:
            await self._bus.close()
        if self._reader is not None:
            self._reader.terminate()

    # Subscriptions. Registering and reading the cursor happen without an await between them,
    # so every event above the returned cursor reaches the subscriber live.

    def subscribe(self, subscriber: Subscriber, channel: str) -> int:
        if self.revoked.is_deactivated(subscriber.user_id):
            # A ticket issued just before the deactivation reached this node.
            subscriber.close(*REVOKED_CLOSE)
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
        subscriber.cancel_timer()

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
                rows = await read_channels(connection, channels, after, through, _BATCH)
            LOG_QUERIES.labels(purpose="replay").inc()
            if rows:
                yield [LogEvent.from_row(**row) for row in rows]
            if len(rows) < _BATCH:
                return
            after = rows[-1]["id"]

    # Fan-out.

    def _revoke_user(self, event: LogEvent) -> None:
        """Record a revocation; a revoked user's connections close (4401, SSE `disconnect`)."""
        user_id = self.revoked.apply(event.type, event.data, event.committed_at)
        if user_id is None or event.type == REACTIVATED.name:
            return
        for subscriber in list(self.subscribers):
            if subscriber.user_id == user_id:
                subscriber.close(*REVOKED_CLOSE)

    def _dispatch(self, event: LogEvent) -> None:
        if is_revocation(event.type):
            self._revoke_user(event)
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

    async def _tail(self, heartbeat: Heartbeat) -> None:
        """Read the log on every NOTIFY (or poll), until cancelled; a failure raises, and the
        supervisor starts it again on a new reader connection."""
        async with self._reading():
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
                self._wake.clear()
                await self._read_log(END_OF_LOG, "tail")
                heartbeat.beat()

    async def _read_log(self, through: int, purpose: str) -> None:
        """Dispatch the log's events in (cursor, through], in queries of up to `_BATCH`."""
        assert self._reader is not None
        while self.cursor < through:
            rows = await read_range(self._reader, self.cursor, through, _BATCH)
            LOG_QUERIES.labels(purpose=purpose).inc()
            for row in rows:
                self._dispatch(LogEvent.from_row(**row))
                self.cursor = row["id"]
            if len(rows) < _BATCH:
                return

    # Following the bus.

    async def _follow_bus(self, heartbeat: Heartbeat) -> None:
        """Dispatch the bus's items, repairing gaps from the log, until cancelled. A repair that
        fails raises (the supervisor restarts this on a new reader connection); what it could
        not read is repaired on the next head heartbeat."""
        async with self._reading():
            while True:
                try:
                    item: BusItem | None = await asyncio.wait_for(self._bus_items.get(), 1.0)
                except TimeoutError:
                    item = None
                if item is not None:
                    await self._handle(item)
                heartbeat.beat()

    async def _handle(self, item: BusItem) -> None:
        if isinstance(item, BatchPart):
            for event in item.events:
                if event.id > self.cursor:
                    self._pending[event.id] = event
            self._advance()
            # Batches are published whole and in order: ids before this batch that have not
            # arrived by now were lost.
            if item.first > self.cursor + 1:
                await self._repair(item.first - 1, "gap")
        elif isinstance(item, Head):
            self._advance()
            if item.through > self.cursor:
                await self._repair(item.through, "head")
        elif isinstance(item, Reconnected):
            await self._repair(END_OF_LOG, "reconnect")

    def _advance(self) -> None:
        """Dispatch the pending events that continue the cursor without a gap."""
        while (event := self._pending.pop(self.cursor + 1, None)) is not None:
            self._dispatch(event)
            self.cursor = event.id

    async def _repair(self, through: int, reason: str) -> None:
        """Read (cursor, through] from the log and dispatch it, then carry on from pending."""
        GAP_REPAIRS.labels(reason=reason).inc()
        await self._read_log(through, "repair")
        for stale in [i for i in self._pending if i <= self.cursor]:
            del self._pending[stale]
        self._advance()

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[None]:
        """The reader connection, opened if there is none; dropped when the block fails, so
        that the next run starts on a new one (a connection whose backend was terminated can
        fail without saying it is closed)."""
        if self._reader is None or self._reader.is_closed():
            self._reader = await asyncpg.connect(self._dsn, server_settings=session_settings())
        try:
            yield
        except BaseException:
            if self._reader is not None:
                self._reader.terminate()
                self._reader = None
            raise

    async def _listen(self, heartbeat: Heartbeat) -> None:
        """One LISTEN session, until cancelled or the connection is lost (which raises: the
        supervisor starts a new session). A statement every `_KEEPALIVE_SECONDS` proves the
        connection alive: a listener on a dead connection would otherwise just hear nothing."""
        on_event: Callable[..., None] = lambda *_: self._wake.set()  # noqa: E731
        on_message: Callable[..., None] = lambda *args: self._dispatch_message(args[3])  # noqa: E731
        connection = await asyncpg.connect(self._dsn, server_settings=session_settings())
        try:
            if self._bus is None:
                await connection.add_listener(EVENTS_CHANNEL, on_event)
            await connection.add_listener(MESSAGES_CHANNEL, on_message)
            self.listening = True
            # Anything committed while we were not listening is found by reading now.
            self._wake.set()
            while True:
                heartbeat.beat()
                await asyncio.sleep(_KEEPALIVE_SECONDS)
                await connection.fetchval("SELECT 1", timeout=_KEEPALIVE_SECONDS)
        finally:
            self.listening = False
            if not connection.is_closed():
                connection.terminate()

    async def publish(self, connection: asyncpg.Connection, message: dict[str, Any]) -> None:
        await connection.execute("SELECT pg_notify($1, $2)", MESSAGES_CHANNEL, json.dumps(message))
