"""A subscriber's wait keeps one timer across waits: each wait still ends at its own deadline."""

import asyncio
import time
import uuid

from realtime_service.events import Ephemeral
from realtime_service.hub import Subscriber

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
