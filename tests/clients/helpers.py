"""What the Python client's tests share."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from stack_client import AsyncStackClient, Event, Reset, StackError, StateChange, Subscription
from stack_client.errors import SubscriptionStopped

from .conftest import HEARTBEAT_SECONDS, ClientStack, event_log

PASSWORD = "client password 1"
T = TypeVar("T")


async def patiently(call: Callable[[], Awaitable[T]]) -> T:
    """The gateway limits /auth/token and /auth/register per address: wait when told to."""
    while True:
        try:
            return await call()
        except StackError as error:
            if error.status != 429:
                raise
            await asyncio.sleep(error.retry_after or 1)


@dataclass
class Person:
    client: AsyncStackClient
    email: str
    me: dict[str, Any]


async def sign_up(base_url: str) -> Person:
    client = AsyncStackClient(base_url)
    email = f"py-{uuid.uuid4().hex[:10]}@example.com"
    await patiently(lambda: client.register(email, PASSWORD, "Py tester"))
    me = await patiently(lambda: client.login(email, PASSWORD))
    return Person(client, email, me)


async def wait_for(condition: Callable[[], bool], within: float = 30.0, what: str = "it") -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.025)


async def restart_realtime(stack: ClientStack, replica: int) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(f"{stack.control_url}/restart?service=realtime-{replica}")
        response.raise_for_status()


async def log_ids(stack: ClientStack, channel: str, after: int) -> list[int]:
    return [int(str(event["id"])) for event in await event_log(stack.database_url, channel, after)]


@dataclass
class Recorder:
    """Consumes a subscription in a task and records what it yields and reports."""

    events: list[Event] = field(default_factory=list)
    resets: list[Reset] = field(default_factory=list)
    states: list[StateChange] = field(default_factory=list)
    stopped: SubscriptionStopped | None = None

    def reconnects(self) -> list[StateChange]:
        return [s for s in self.states if s.state == "reconnecting" and s.delay is not None]

    def follow(self, subscription: Subscription) -> "asyncio.Task[None]":
        async def consume() -> None:
            try:
                async for item in subscription:
                    if isinstance(item, Event):
                        self.events.append(item)
                    elif isinstance(item, Reset):
                        self.resets.append(item)
            except SubscriptionStopped as stopped:
                self.stopped = stopped

        return asyncio.create_task(consume())


# Stall detection at two heartbeats of the stack's 1 s is what the stall tests check; the
# others allow more, so that a test process starved of CPU on a shared machine does not
# mistake its own slowness for a stalled connection.
TOLERANT_HEARTBEAT = 5 * HEARTBEAT_SECONDS


def subscribe(
    person: Person,
    channel: str,
    transport: str,
    recorder: Recorder,
    last_event_id: int | None = None,
    heartbeat: float = TOLERANT_HEARTBEAT,
) -> Subscription:
    subscription = person.client.live.subscribe(
        [channel],
        transport="sse" if transport == "sse" else "ws",
        last_event_id=last_event_id,
        heartbeat=heartbeat,
        backoff=(0.1, 1.0),
        on_state=recorder.states.append,
    )
    recorder.follow(subscription)
    return subscription
