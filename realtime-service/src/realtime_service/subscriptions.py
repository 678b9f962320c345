"""Opening a subscription, shared by SSE and WebSocket: register, authorise, replay.

The hand-off from replay to live has no gap and no duplicate: the subscriber is registered
with the hub first, which returns the hub's cursor H at that instant; every event above H then
reaches the subscriber live, and the replay reads (last_event_id, H] from the log. Access is
checked after registering, so a removal that commits during the check is either seen by the
check (403) or arrives through the log afterwards (and revokes the channel).
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from eventlog.reader import bounds
from realtime_service import metrics
from realtime_service.channels import can_read
from realtime_service.events import LogEvent
from realtime_service.hub import Hub, Subscriber
from servicekit.db import Database
from servicekit.errors import Forbidden


class ChannelForbidden(Forbidden):
    error = "channel_forbidden"
    default_detail = "You may not read this channel"


@dataclass(frozen=True)
class Opened:
    reset: bool
    """The cursor was older than the log's retention, or ahead of it: state must be refetched."""
    replay_after: int | None
    """Replay (replay_after, replay_through] before live events; None: nothing to replay."""
    replay_through: int


async def open_channels(
    hub: Hub,
    connection: asyncpg.Connection,
    subscriber: Subscriber,
    channels: list[str],
    last_event_id: int | None,
) -> Opened:
    through = hub.cursor
    for channel in channels:
        through = hub.subscribe(subscriber, channel)
    for channel in channels:
        if not await can_read(connection, subscriber.user_id, channel):
            for opened in channels:
                hub.unsubscribe(subscriber, opened)
            raise ChannelForbidden(f"You may not read {channel}")
    if last_event_id is None:
        return Opened(reset=False, replay_after=None, replay_through=through)
    pruned_through, newest = await bounds(connection)
    if last_event_id < pruned_through or last_event_id > max(newest, through):
        metrics.REPLAYS.labels(result="reset").inc()
        return Opened(reset=True, replay_after=None, replay_through=through)
    metrics.REPLAYS.labels(result="ok").inc()
    return Opened(reset=False, replay_after=last_event_id, replay_through=through)


async def replay(
    hub: Hub, database: Database, opened: Opened, channels: list[str]
) -> AsyncIterator[list[LogEvent]]:
    if opened.replay_after is None:
        return
    async for batch in hub.replay(database, channels, opened.replay_after, opened.replay_through):
        yield batch
