"""A subscriber's wait keeps one timer across waits: each wait still ends at its own deadline,
on asyncio's loop and on uvloop, and a removed subscriber leaves no timer behind."""

import asyncio
import gc
import time
import uuid
import weakref

import uvloop

from realtime_service.events import Ephemeral
from realtime_service.hub import Hub, Subscriber

ITEM = Ephemeral(channel="board:x", sender="other", ws="{}")


def subscriber() -> Subscriber:
    return Subscriber(uuid.uuid4(), "ws", queue_limit=10)


async def timed_wait(waiting: Subscriber, max_seconds: float) -> float:
    started = time.monotonic()
    await waiting.wait(max_seconds)
    return time.monotonic() - started


async def test_an_item_ends_the_wait_at_once() -> None:
    waiting = subscriber()
    asyncio.get_running_loop().call_later(0.05, waiting.push, ITEM)
    assert await timed_wait(waiting, 5) < 1
    assert waiting.take() == [ITEM]


async def test_a_later_wait_is_not_cut_short_by_the_timer_of_an_earlier_one() -> None:
    waiting = subscriber()
    # The first wait arms a timer for 0.3 s and is woken by an item after 0.05 s.
    asyncio.get_running_loop().call_later(0.05, waiting.push, ITEM)
    await waiting.wait(0.3)
    waiting.take()
    # The kept timer fires 0.25 s into this wait, which must go on to its own 0.6 s.
    assert 0.55 <= await timed_wait(waiting, 0.6) < 2


async def test_a_shorter_wait_moves_the_timer_earlier() -> None:
    waiting = subscriber()
    asyncio.get_running_loop().call_later(0.05, waiting.push, ITEM)
    await waiting.wait(30)
    waiting.take()
    assert await timed_wait(waiting, 0.1) < 1


async def test_a_timer_that_fires_between_waits_wakes_nothing() -> None:
    waiting = subscriber()
    asyncio.get_running_loop().call_later(0.01, waiting.push, ITEM)
    await waiting.wait(0.1)
    waiting.take()
    await asyncio.sleep(0.2)  # the first wait's timer fires while nobody waits
    assert 0.25 <= await timed_wait(waiting, 0.3) < 2


def test_on_uvloop_a_timer_firing_within_its_millisecond_ends_the_wait_without_spinning() -> None:
    """uvloop (what the service runs on) keeps time in whole milliseconds and may fire a timer
    just before its deadline: that firing ends the wait, rather than re-arming until the clock
    ticks over (about 100 firings per wait)."""

    async def firings_per_wait() -> float:
        waiting = subscriber()
        firings = 0
        on_timer = waiting._on_timer

        def counted() -> None:
            nonlocal firings
            firings += 1
            on_timer()

        waiting._on_timer = counted  # type: ignore[method-assign]
        for _ in range(20):
            await waiting.wait(0.0104)
        return firings / 20

    assert uvloop.run(firings_per_wait()) <= 2


def test_a_removed_subscriber_leaves_no_timer_behind() -> None:
    async def removed_while_waiting(hub: Hub) -> "weakref.ref[Subscriber]":
        waiting = subscriber()
        hub.subscribe(waiting, "board:x")
        # Woken by an item: its 600 s timer is kept for the next wait, which never comes.
        asyncio.get_running_loop().call_later(0.01, waiting.push, ITEM)
        await waiting.wait(600)
        hub.remove(waiting)
        return weakref.ref(waiting)

    async def after_remove() -> tuple[int, bool]:
        gone = await removed_while_waiting(Hub("postgresql://unused", poll_interval=1.0))
        loop = asyncio.get_running_loop()
        pending = sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]
        # What a leftover timer would cost: the connection's subscriber kept alive.
        gc.collect()
        return pending, gone() is None

    pending, collected = asyncio.run(after_remove())
    assert pending == 0
    assert collected
