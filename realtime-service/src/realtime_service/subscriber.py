"""One client connection's side of the fan-out: its channels, a bounded queue of what is to be
sent to it, and a wait that ends when there is something to send."""

import asyncio
import uuid
from collections import deque

from realtime_service.events import Ephemeral, LogEvent

Item = LogEvent | Ephemeral
_TIMER_RESOLUTION = 0.001


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
