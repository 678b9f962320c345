"""Following the event log: the process's one reader of it, which hands every event, in id
order and exactly once, to `dispatch`.

The log's ids are dense and only ever appended in order (eventlog.sequencer), so `cursor` is
exact: every event up to it has been dispatched, and the next is cursor + 1. Events arrive one
of two ways:
- PostgreSQL only (the default): one dedicated connection LISTENs for the sequencer's
  notification, one per batch. Each wake-up, and a poll every `poll_interval` (notifications
  are lost while the LISTEN connection is down), runs one query `id > cursor` however many
  clients there are.
- NATS (`nats_url` set): batches arrive on the bus (realtime_service.bus) and are dispatched in
  id order; the log is read only to repair a gap (an id that should have arrived and did not,
  found from the next message or the sequencer's head heartbeat), after a bus reconnect, and at
  start. So in steady state the database's reads do not grow with the number of nodes.
The LISTEN connection also carries ephemeral messages (realtime_service.messages), handed to
`on_message`.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from nats.errors import Error as NatsError

from eventlog.reader import END_OF_LOG, NOTIFY_CHANNEL, read_range
from realtime_service.bus import BatchPart, BusItem, EventBus, Head, Reconnected
from realtime_service.events import LogEvent
from realtime_service.messages import MESSAGES_CHANNEL
from realtime_service.metrics import GAP_REPAIRS, LOG_QUERIES
from servicekit.db import CONNECTION_ERRORS, session_settings
from servicekit.supervisor import Heartbeat, Supervisor

logger = logging.getLogger(__name__)

BATCH = 500
_KEEPALIVE_SECONDS = 2.0
_BUS_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, NatsError)


class LogFollower:
    def __init__(
        self,
        dsn: str,
        poll_interval: float,
        nats_url: str | None,
        dispatch: Callable[[LogEvent], None],
        on_message: Callable[[str], None],
    ) -> None:
        self._dsn = dsn
        self._poll_interval = poll_interval
        self._dispatch = dispatch
        self._on_message = on_message
        self._bus_items: asyncio.Queue[BusItem] = asyncio.Queue()
        self._bus = EventBus(nats_url, self._bus_items.put_nowait) if nats_url else None
        self._pending: dict[int, LogEvent] = {}
        self.cursor = 0
        self._wake = asyncio.Event()
        # The background loops (listen, tail or bus and follow-bus), supervised.
        self.loops = Supervisor()
        self._reader: asyncpg.Connection | None = None
        self.listening = False

    async def start(self, position: Callable[[asyncpg.Connection], Awaitable[int]]) -> None:
        """Follow from the log position `position` reads (on the reader connection)."""
        self._reader = await asyncpg.connect(self._dsn, server_settings=session_settings())
        self.cursor = await position(self._reader)
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

    # Following the log through PostgreSQL.

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
        """Dispatch the log's events in (cursor, through], in queries of up to `BATCH`."""
        assert self._reader is not None
        while self.cursor < through:
            rows = await read_range(self._reader, self.cursor, through, BATCH)
            LOG_QUERIES.labels(purpose=purpose).inc()
            for row in rows:
                self._dispatch(LogEvent.from_row(**row))
                self.cursor = row["id"]
            if len(rows) < BATCH:
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
        on_message: Callable[..., None] = lambda *args: self._on_message(args[3])  # noqa: E731
        connection = await asyncpg.connect(self._dsn, server_settings=session_settings())
        try:
            if self._bus is None:
                await connection.add_listener(NOTIFY_CHANNEL, on_event)
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
