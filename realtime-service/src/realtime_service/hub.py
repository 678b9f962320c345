"""The hub: the process's one follower of the event log wired to its fan-out, the face the
transports (sse, ws, subscriptions) see. Each job is a module of its own:

- realtime_service.log_follower: following the log (LISTEN and tail, or NATS with gap repair);
- realtime_service.subscriber: a connection's queue, its wait and timer;
- realtime_service.fanout: the subscribers by channel, and delivery to them;
- realtime_service.access_policy: what events change about access (removal, deletion,
  revocation), applied around each event's delivery;
- realtime_service.messages: ephemeral messages between replicas.
"""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from eventlog.reader import read_channels
from eventlog.revocations import RevokedUsers, load_revocations
from realtime_service.access_policy import AccessPolicy
from realtime_service.events import LogEvent
from realtime_service.fanout import FanOut
from realtime_service.log_follower import BATCH, LogFollower
from realtime_service.messages import decode_message, publish_message
from realtime_service.metrics import LOG_QUERIES
from realtime_service.subscriber import Item, Subscriber
from servicekit.db import Database

__all__ = ["Hub", "Item", "Subscriber"]


class Hub:
    def __init__(
        self,
        dsn: str,
        poll_interval: float,
        nats_url: str | None = None,
        revoked: RevokedUsers | None = None,
    ) -> None:
        # Users whose tokens were revoked, from the log (eventlog.revocations); shared with
        # the token verifier.
        self.revoked = revoked if revoked is not None else RevokedUsers(0)
        self._fanout = FanOut()
        self._policy = AccessPolicy(self._fanout, self.revoked)
        self._follower = LogFollower(dsn, poll_interval, nats_url, self._dispatch, self._message)
        self.loops = self._follower.loops

    @property
    def cursor(self) -> int:
        return self._follower.cursor

    @property
    def subscribers(self) -> set[Subscriber]:
        return self._fanout.subscribers

    async def start(self) -> None:
        # The revocations still in force up to the head, which is where dispatch starts.
        await self._follower.start(lambda reader: load_revocations(reader, self.revoked))

    async def ensure_listening(self) -> None:
        await self._follower.ensure_listening()

    async def stop(self) -> None:
        await self._follower.stop()

    # Subscriptions. Registering and reading the cursor happen without an await between them,
    # so every event above the returned cursor reaches the subscriber live.

    def subscribe(self, subscriber: Subscriber, channel: str) -> int:
        self._policy.admit(subscriber)
        self._fanout.subscribe(subscriber, channel)
        return self.cursor

    def unsubscribe(self, subscriber: Subscriber, channel: str) -> None:
        self._fanout.unsubscribe(subscriber, channel)

    def remove(self, subscriber: Subscriber) -> None:
        self._fanout.remove(subscriber)

    def close_all(self, code: int, reason: str) -> None:
        self._fanout.close_all(code, reason)

    async def replay(
        self, database: Database, channels: list[str], after: int, through: int
    ) -> AsyncIterator[list[LogEvent]]:
        """The events on `channels` with ids in (after, through], oldest first, in batches: a
        cursor days old must not load the whole log, nor hold a pooled connection while a
        slow client takes its batches."""
        while True:
            async with database.acquire() as connection:
                rows = await read_channels(connection, channels, after, through, BATCH)
            LOG_QUERIES.labels(purpose="replay").inc()
            if rows:
                yield [LogEvent.from_row(**row) for row in rows]
            if len(rows) < BATCH:
                return
            after = rows[-1]["id"]

    async def publish(self, connection: asyncpg.Connection, message: dict[str, Any]) -> None:
        await publish_message(connection, message)

    def _dispatch(self, event: LogEvent) -> None:
        self._policy.before_delivery(event)
        self._fanout.deliver(event)
        self._policy.after_delivery(event)

    def _message(self, payload: str) -> None:
        message = decode_message(payload)
        if message is not None:
            self._fanout.deliver_message(message)
