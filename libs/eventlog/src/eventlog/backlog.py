"""The outbox backlog, measured from the database when Prometheus scrapes, by every replica.

The inbox's size and the age of its oldest row used to be reported by the sequencer's own
loop, on the leader only, which zeroed them when it stepped down: with no sequencer running
(issue 21) the metrics said the backlog was empty while rows waited, and the lag alert could
never fire. Here every replica measures them on each scrape, whatever its sequencer does:

- `api_outbox_inbox_rows`: events written but not yet in the log;
- `api_outbox_sequencer_lag_seconds`: age of the oldest of them (0 when there is none);
- `api_outbox_backlog_probe_success`: 1 when the two above were measured for this scrape, 0
  when the database did not answer within `PROBE_TIMEOUT_SECONDS`; the two are then left out
  (no value rather than a reassuring 0).

The scrape endpoint is a plain function run in a worker thread, so the collector hands the
query to the event loop and waits at most `PROBE_TIMEOUT_SECONDS`: the loop is never blocked,
and a scrape answers in bounded time with the database down. Collected on the event loop's own
thread (a test reading the registry), it reports the last measurement and starts a new one.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventlog.tables import INBOX
from servicekit.db import Database

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 1.0
# A measurement this recent is reused rather than repeated (several scrapers at once).
REUSE_SECONDS = 0.5

_BACKLOG = f"""
    SELECT count(*) AS rows,
        coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS lag
    FROM {INBOX}
"""


@dataclass(frozen=True)
class Backlog:
    rows: int
    lag: float
    measured_at: float  # time.monotonic()


class BacklogProbe:
    """Measures one database's inbox; bound to the event loop it was created on."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.last: Backlog | None = None
        self._measuring: asyncio.Task[Backlog | None] | None = None

    async def measure(self) -> Backlog | None:
        """The backlog now, or None when the database did not answer in time."""
        if self.last is not None and time.monotonic() - self.last.measured_at < REUSE_SECONDS:
            return self.last
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS), self._database.acquire() as conn:
                row = await conn.fetchrow(_BACKLOG)
        except Exception as exc:
            logger.warning("outbox backlog not measured", extra={"err": repr(exc)})
            return None
        assert row is not None
        self.last = Backlog(int(row["rows"]), float(row["lag"]), time.monotonic())
        return self.last

    def collect_now(self) -> Backlog | None:
        """From a scrape's worker thread: measure on the loop, waiting a bounded time. On the
        loop's own thread: the last measurement, if recent, and a new one started."""
        if threading.get_ident() == self._thread:
            if self._measuring is None or self._measuring.done():
                self._measuring = self._loop.create_task(self.measure())
            last = self.last
            fresh = last is not None and time.monotonic() - last.measured_at < 5.0
            return last if fresh else None
        if self._loop.is_closed():
            return None
        future = asyncio.run_coroutine_threadsafe(self.measure(), self._loop)
        try:
            return future.result(timeout=PROBE_TIMEOUT_SECONDS + 0.5)
        except (FutureTimeout, RuntimeError):
            future.cancel()
            return None


class _BacklogCollector(Collector):
    """One per process, registered at import; reports the probe of the app started last."""

    def __init__(self) -> None:
        self.probe: BacklogProbe | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(None, described=True))

    def collect(self) -> Iterator[Metric]:
        probe = self.probe
        return iter(self._families(probe.collect_now() if probe is not None else None))

    @staticmethod
    def _families(backlog: Backlog | None, described: bool = False) -> list[Metric]:
        rows = GaugeMetricFamily(
            "api_outbox_inbox_rows",
            "Events written but not yet in the log (measured by each replica at scrape time)",
        )
        lag = GaugeMetricFamily(
            "api_outbox_sequencer_lag_seconds",
            "Age of the oldest event still in the inbox; 0 when it is empty (measured by each"
            " replica at scrape time)",
        )
        success = GaugeMetricFamily(
            "api_outbox_backlog_probe_success",
            "1 when this scrape measured the outbox backlog, 0 when the database did not answer",
        )
        if not described:
            if backlog is not None:
                rows.add_metric([], backlog.rows)
                lag.add_metric([], backlog.lag)
            success.add_metric([], 1 if backlog is not None else 0)
        return [rows, lag, success]


COLLECTOR = _BacklogCollector()
REGISTRY.register(COLLECTOR)
