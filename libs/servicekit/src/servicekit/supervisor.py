"""Supervised background loops: a loop that fails is logged and restarted, never lost.

A bare `asyncio.create_task` keeps a task that ended with an exception, and says nothing
(issue 21: api-service's sequencer died of an asyncpg error its loop did not expect, and live
delivery stopped for good). Every background loop of the services runs here instead:

- `Supervisor.spawn(name, loop)` runs `loop(heartbeat)` in a task; when it raises (or returns)
  it is logged and started again after a capped exponential backoff (`INITIAL_BACKOFF_SECONDS`
  doubling to `MAX_BACKOFF_SECONDS`, back to the start once a run has made progress). Errors
  named `transient` (a lost database connection) are logged as a warning, anything else with
  its traceback.
- The loop calls `heartbeat.beat()` after each successful iteration (a poll that answered,
  even with nothing to do).
- `Supervisor.check` is a readiness check: it fails while a loop marked essential has not beaten
  for `stale_after` seconds (a loop that keeps failing, or hangs) or has stopped.

Metrics, labelled by loop: `servicekit_loop_restarts_total`, `servicekit_loop_up` (1 while
the loop runs, 0 while it waits out its backoff), `servicekit_loop_last_success_timestamp_seconds`
and `servicekit_loop_stale_after_seconds` (its bound; the stalled-loop alert compares the two).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

logger = logging.getLogger(__name__)

INITIAL_BACKOFF_SECONDS = 0.1
# Short: a loop that fails at every start is, almost always, one whose database or bus is
# down, and the time it takes to notice their return is what delivery waits after an outage.
MAX_BACKOFF_SECONDS = 2.0
STOP_TIMEOUT_SECONDS = 5.0

RESTARTS = Counter(
    "servicekit_loop_restarts", "Times a background loop failed and was started again", ["loop"]
)
UP = Gauge(
    "servicekit_loop_up", "1 while a background loop runs, 0 while it waits to restart", ["loop"]
)
LAST_SUCCESS = Gauge(
    "servicekit_loop_last_success_timestamp_seconds",
    "Unix time of a background loop's last successful iteration",
    ["loop"],
)
STALE_AFTER = Gauge(
    "servicekit_loop_stale_after_seconds",
    "How long a background loop may go without a successful iteration before it is stalled",
    ["loop"],
)


class Heartbeat:
    """A loop's report of progress: `beat()` after each successful iteration."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = time.monotonic()
        self._gauge = LAST_SUCCESS.labels(loop=name)

    def beat(self) -> None:
        self.last = time.monotonic()
        self._gauge.set(time.time())


Loop = Callable[[Heartbeat], Awaitable[None]]
"""A background loop: runs until cancelled, reporting progress through its heartbeat."""


@dataclass
class _Supervised:
    name: str
    loop: Loop
    essential: bool
    stale_after: float | None
    transient: tuple[type[BaseException], ...]
    heartbeat: Heartbeat
    backoff_initial: float
    backoff_max: float
    restarts: int = 0
    running: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class LoopsUnhealthy(RuntimeError):
    """Raised by `Supervisor.check`: essential loops that are stalled or stopped."""


class Supervisor:
    def __init__(
        self,
        *,
        backoff_initial: float = INITIAL_BACKOFF_SECONDS,
        backoff_max: float = MAX_BACKOFF_SECONDS,
    ) -> None:
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._loops: dict[str, _Supervised] = {}

    def spawn(
        self,
        name: str,
        loop: Loop,
        *,
        essential: bool = True,
        stale_after: float | None = None,
        transient: tuple[type[BaseException], ...] = (),
    ) -> Heartbeat:
        """Start `loop` under supervision. `stale_after`: seconds without a beat after which it
        is stalled (None: never, only a stopped loop is unhealthy); `essential`: readiness
        fails while it is stalled or stopped."""
        if name in self._loops:
            raise ValueError(f"a loop named {name!r} is already supervised")
        supervised = _Supervised(
            name,
            loop,
            essential,
            stale_after,
            transient,
            Heartbeat(name),
            self._backoff_initial,
            self._backoff_max,
        )
        RESTARTS.labels(loop=name)
        if stale_after is not None:
            STALE_AFTER.labels(loop=name).set(stale_after)
        supervised.task = asyncio.create_task(self._supervise(supervised), name=name)
        self._loops[name] = supervised
        return supervised.heartbeat

    async def _supervise(self, supervised: _Supervised) -> None:
        name, up = supervised.name, UP.labels(loop=supervised.name)
        failures = 0
        while True:
            started = time.monotonic()
            supervised.running = True
            up.set(1)
            try:
                await supervised.loop(supervised.heartbeat)
            except asyncio.CancelledError:
                raise
            except supervised.transient as exc:
                logger.warning("background loop failed", extra={"loop": name, "err": repr(exc)})
            except Exception:
                logger.exception("background loop crashed", extra={"loop": name})
            else:
                logger.error("background loop ended on its own", extra={"loop": name})
            finally:
                supervised.running = False
                up.set(0)
            # A run that made progress starts the backoff afresh: a loop failing once an hour
            # is restarted at once, one failing at every start waits longer and longer.
            failures = 1 if supervised.heartbeat.last > started else failures + 1
            delay = min(supervised.backoff_max, supervised.backoff_initial * 2 ** (failures - 1))
            supervised.restarts += 1
            RESTARTS.labels(loop=name).inc()
            logger.info("restarting background loop", extra={"loop": name, "delay": delay})
            await asyncio.sleep(delay)

    def unhealthy(self) -> list[str]:
        """Essential loops that are stalled (no beat within their bound) or stopped."""
        now = time.monotonic()
        failing = []
        for supervised in self._loops.values():
            if not supervised.essential:
                continue
            stopped = supervised.task is None or supervised.task.done()
            stale = (
                supervised.stale_after is not None
                and now - supervised.heartbeat.last > supervised.stale_after
            )
            if stopped or stale:
                failing.append(supervised.name)
        return failing

    async def check(self) -> None:
        """A readiness check: raises while an essential loop is stalled or stopped."""
        failing = self.unhealthy()
        if failing:
            raise LoopsUnhealthy(", ".join(failing))

    def restarts(self, name: str) -> int:
        return self._loops[name].restarts

    def running(self, name: str) -> bool:
        return self._loops[name].running

    async def stop(self, grace: float = STOP_TIMEOUT_SECONDS) -> None:
        """Cancel every loop and wait for them to end (each one's cleanup runs), at most
        `grace` seconds: a loop whose cleanup hangs is logged and left behind, so that
        shutdown goes on."""
        tasks = [s.task for s in self._loops.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                logger.error("background loop did not stop", extra={"loop": task.get_name()})
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    logger.error(
                        "background loop failed while stopping",
                        extra={"loop": task.get_name()},
                        exc_info=task.exception(),
                    )
        for name in self._loops:
            UP.labels(loop=name).set(0)
        self._loops.clear()
