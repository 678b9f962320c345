"""The NATS event bus: its wire contract and connection settings, shared by the sequencer
(which publishes each committed batch, eventlog.publisher) and realtime-service (which follows
them).
Core NATS, at most once: the log stays the only durable record, and realtime nodes repair what
they miss from it.

- subject `events.<kind>.<id>` per channel `<kind>:<id>`: JSON `{"first", "last", "events"}`,
  the events of one channel in one batch, oldest first (each a `BusEvent`), and `first`/`last`
  the id range of the whole batch;
- subject `events.head`: JSON `{"through": N}`, the log's highest id, after every batch and on
  every lease renewal (a heartbeat: a node that lost the end of a burst learns it here).
A batch's messages are published in id order from one connection, so a node subscribed to
`events.>` receives them in that order, and ids are dense: anything it expected and did not
get is a gap it can read from the log.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import TypedDict

import nats
from nats.aio.client import Client

logger = logging.getLogger(__name__)

ALL_SUBJECTS = "events.>"
HEAD_SUBJECT = "events.head"


class BusEvent(TypedDict):
    id: int
    channel: str
    type: str
    data_json: str  # the event's data as the log's JSON text, passed through untouched
    actor_id: str
    created_at: str  # ISO 8601


def channel_subject(channel: str) -> str:
    return "events." + channel.replace(":", ".", 1)


async def log_error(exc: Exception) -> None:
    logger.warning("NATS error", extra={"err": repr(exc)})


Callback = Callable[[], Awaitable[None]]


async def connect(
    url: str,
    name: str,
    *,
    disconnected_cb: Callback | None = None,
    reconnected_cb: Callback | None = None,
) -> Client:
    """A client that never gives up: with reconnecting allowed and unlimited, nats-py retries
    the first connection too (every `reconnect_time_wait`, each failure through `error_cb`), so
    this returns once the server has answered, and the client reconnects and resubscribes by
    itself afterwards."""
    return await nats.connect(
        url,
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb,
        error_cb=log_error,
    )
