"""The event sequencer: moves settled inbox rows into the log `eventlog.events`, numbering them.

One api replica at a time sequences, the holder of the lease row `eventlog.sequencer_lease`
(`holder`, `epoch`, `expires_at`). A replica takes the lease when it has expired, with a new
epoch; the holder renews it well before it runs out and gives it up when it cannot. A replica
whose connection dropped takes its own lease (same holder id) back at once, with a new epoch,
so that a reconnect, not a lease, is what the drop costs.

Fencing: every batch is one transaction whose first statement renews the lease only if this
replica still holds it (same holder and epoch, not expired). That statement locks the lease
row until the batch commits, so no other replica can take the lease while a batch is in
flight, and a replica that was paused or cut off past its lease finds another holder or epoch
and moves nothing: its late batch is refused. A replica stalled inside a batch is ended by
PostgreSQL (`idle_in_transaction_session_timeout`), which releases the lock.

Settled rows: an inbox row is settled when its transaction id is below
`pg_snapshot_xmin(pg_current_snapshot())`, i.e. every transaction that could still insert a row
with a smaller id has ended. A transaction gets its id at its first write, so later writers
always have larger ids. Settled rows are moved in (xid, seq) order, the ids continue densely
from `sequenced_through` (kept on the lease row, so the fence lock also guards it), and the
rows are deleted from the inbox in the same transaction. A long-running transaction (anywhere
in the cluster, once it has written) holds every later row back: `api_outbox_sequencer_lag_seconds`,
measured by every replica at scrape time (eventlog.backlog), whatever the sequencer does.

After each committed batch the sequencer signals it: one `pg_notify` in the batch
transaction, or, with NATS, a publish of the batch once it has committed (see `BatchBus`).
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Protocol

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from eventlog.reader import NOTIFY_CHANNEL
from eventlog.tables import INBOX, LEASE, LOG
from eventlog.writer import on_events_committed
from servicekit.db import session_settings
from servicekit.supervisor import Heartbeat

logger = logging.getLogger(__name__)


BATCHES = Counter("api_outbox_batches", "Batches the sequencer committed to the log")
SEQUENCED = Counter("api_outbox_sequenced_events", "Events the sequencer moved into the log")
LEADER = Gauge("api_outbox_sequencer_leader", "1 while this replica holds the sequencer lease")
SEQUENCING_DELAY = Histogram(
    "api_outbox_sequencing_delay_seconds",
    "From an event's insert into the inbox to the batch that moves it into the log",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0),
)
REFUSED = Counter(
    "api_outbox_refused_batches", "Batches not committed because the lease was lost (fencing)"
)

# Taken when it has expired, or at once when it is this replica's own (a new session after a
# dropped connection): the new epoch fences whatever the old session might still attempt, and
# the row lock waits out a batch of the old session's still in flight on the server.
_ACQUIRE = f"""
    UPDATE {LEASE}
    SET holder = $1, epoch = epoch + 1, expires_at = clock_timestamp() + make_interval(secs => $2)
    WHERE expires_at < clock_timestamp() OR holder = $1
    RETURNING epoch, sequenced_through
"""
# The fence: succeeds only for the current holder of an unexpired lease, and locks the row.
_RENEW = f"""
    UPDATE {LEASE} SET expires_at = clock_timestamp() + make_interval(secs => $3)
    WHERE holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()
    RETURNING sequenced_through
"""
_RELEASE = f"""
    UPDATE {LEASE} SET expires_at = '-infinity'
    WHERE holder = $1 AND epoch = $2
"""
_SETTLED = "xid < pg_snapshot_xmin(pg_current_snapshot())"
_HAS_SETTLED = f"SELECT EXISTS (SELECT FROM {INBOX} WHERE {_SETTLED})"


def _moving_settled(final_select: str) -> str:
    """The batch statement: the oldest settled inbox rows (at most $1) deleted from the inbox,
    numbered from `sequenced_through` in (xid, seq) order, inserted into the log, and the
    counter advanced; then `final_select` over the CTE `logged`. Run after the fence, in its
    transaction: the statement's snapshot is taken with the lease row locked."""
    return f"""
        WITH settled AS (
            SELECT xid, seq FROM {INBOX} WHERE {_SETTLED} ORDER BY xid, seq LIMIT $1
        ),
        moved AS (
            DELETE FROM {INBOX} AS i USING settled AS s
            WHERE i.xid = s.xid AND i.seq = s.seq
            RETURNING i.xid, i.seq, i.channel, i.type, i.data, i.actor_id, i.created_at
        ),
        logged AS (
            INSERT INTO {LOG} (id, channel, type, data, actor_id, created_at)
            SELECT (SELECT sequenced_through FROM {LEASE})
                    + row_number() OVER (ORDER BY m.xid, m.seq),
                m.channel, m.type, m.data, m.actor_id, m.created_at
            FROM moved AS m
            RETURNING id, channel, type, data, actor_id, created_at,
                extract(epoch FROM clock_timestamp() - created_at)::float8 AS delay
        ),
        advanced AS (
            UPDATE {LEASE} SET sequenced_through = (SELECT max(id) FROM logged)
            WHERE EXISTS (SELECT FROM logged)
        )
        {final_select}
    """


_MOVE_AND_NOTIFY = _moving_settled(
    f"SELECT count(*) AS moved, array_agg(delay) AS delays,"
    f" pg_notify('{NOTIFY_CHANNEL}', max(id)::text) FROM logged HAVING count(*) > 0"
)
_MOVE_AND_RETURN = _moving_settled(
    "SELECT id, channel, type, data::text AS data_json, actor_id, created_at, delay"
    " FROM logged ORDER BY id"
)


class BatchBus(Protocol):
    """Where committed batches are published (NATS), instead of a NOTIFY per batch."""

    async def publish_batch(self, events: list[asyncpg.Record]) -> None: ...

    async def publish_head(self, through: int) -> None: ...


class SequencerSettings(Protocol):
    """The sequencer's settings, as the service running it names them (api-service's)."""

    @property
    def sequencer_lease_seconds(self) -> float: ...

    @property
    def sequencer_batch_size(self) -> int: ...

    @property
    def sequencer_poll_min_seconds(self) -> float: ...

    @property
    def sequencer_poll_max_seconds(self) -> float: ...


class Sequencer:
    def __init__(self, dsn: str, settings: SequencerSettings, bus: BatchBus | None = None) -> None:
        self._dsn = dsn
        self._lease = settings.sequencer_lease_seconds
        self._batch_size = settings.sequencer_batch_size
        self._poll_min = settings.sequencer_poll_min_seconds
        self._poll_max = settings.sequencer_poll_max_seconds
        self._bus = bus
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.epoch: int | None = None
        self._connection: asyncpg.Connection | None = None
        self._nudged = asyncio.Event()

    async def run(self, heartbeat: Heartbeat | None = None) -> None:
        """One session on a connection of its own: sequence while holding the lease, try to take
        it otherwise; until cancelled, or until the connection fails, which raises. The
        supervisor (servicekit.supervisor) logs the failure and starts a new session, with the
        same holder id: it takes its own unexpired lease back at once. `heartbeat` beats after
        every poll that answered."""
        # A commit of this replica's that wrote events cuts the poll's sleep short: those
        # events are moved at once (those of other replicas wait for the next poll).
        stop_listening = on_events_committed(self._nudged.set)
        try:
            await self._run_connected(heartbeat or Heartbeat("sequencer"))
        finally:
            stop_listening()
            await self._release()

    async def _run_connected(self, heartbeat: Heartbeat) -> None:
        timeout_ms = str(int(max(self._lease / 2, 0.5) * 1000))
        self._connection = await asyncpg.connect(
            self._dsn,
            server_settings=session_settings(
                # A replica stalled inside a batch (paused, partitioned) is cut off by the
                # server, which releases the lease lock it holds, well within a lease.
                idle_in_transaction_session_timeout=timeout_ms,
                lock_timeout=timeout_ms,
                application_name="api-sequencer",
            ),
        )
        idle = self._poll_min
        next_renewal = 0.0
        while True:
            heartbeat.beat()  # connected, or the previous poll answered
            now = time.monotonic()
            if self.epoch is None:
                if not await self._acquire():
                    await asyncio.sleep(self._lease / 3)
                    continue
                next_renewal = now + self._lease / 3
            moved = 0
            if await self._connection.fetchval(_HAS_SETTLED):
                # Each batch renews the lease (its fence); a replica resumed after a pause
                # gets here first, and its batch is refused if the lease moved on.
                moved = await self._move_batch()
                next_renewal = time.monotonic() + self._lease / 3
            elif now >= next_renewal:
                if not await self._renew():
                    continue
                next_renewal = now + self._lease / 3
            if self.epoch is None:
                continue
            if moved >= self._batch_size:
                continue
            idle = self._poll_min if moved else min(idle * 2, self._poll_max)
            # While events stream in they are taken one batch per `idle`; once the inbox has
            # nothing settled, a commit of this replica's cuts the backed-off sleep short.
            await (asyncio.sleep(idle) if moved else self._sleep_unless_nudged(idle))

    async def _sleep_unless_nudged(self, seconds: float) -> None:
        """Until the next poll, or until this replica commits events (or has committed some
        since the last nudge was taken)."""
        if not self._nudged.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._nudged.wait()
        self._nudged.clear()

    async def _acquire(self) -> bool:
        assert self._connection is not None
        try:
            row = await self._connection.fetchrow(_ACQUIRE, self.holder, self._lease)
        except asyncpg.LockNotAvailableError:
            return False  # the holder is inside a batch: its lease is alive
        if row is None:
            return False
        self.epoch = row["epoch"]
        LEADER.set(1)
        logger.info("sequencer lease acquired", extra={"epoch": self.epoch})
        if self._bus is not None:
            await self._bus.publish_head(row["sequenced_through"])
        return True

    async def _renew(self) -> bool:
        assert self._connection is not None
        try:
            through = await self._connection.fetchval(_RENEW, self.holder, self.epoch, self._lease)
        except asyncpg.LockNotAvailableError:
            through = None  # another replica holds the lease row: ours is gone
        if through is None:
            self._step_down()
            return False
        if self._bus is not None:
            await self._bus.publish_head(through)
        return True

    async def _move_batch(self) -> int:
        """One fenced batch; the number of events moved (0 when the lease was lost)."""
        assert self._connection is not None
        try:
            async with self._connection.transaction():
                fence = await self._connection.fetchval(
                    _RENEW, self.holder, self.epoch, self._lease
                )
                if fence is None:
                    self._refused()
                    return 0
                if self._bus is None:
                    row = await self._connection.fetchrow(_MOVE_AND_NOTIFY, self._batch_size)
                    moved, delays = (row["moved"], row["delays"]) if row else (0, [])
                    events = []
                else:
                    events = await self._connection.fetch(_MOVE_AND_RETURN, self._batch_size)
                    moved, delays = len(events), [event["delay"] for event in events]
        except asyncpg.LockNotAvailableError:
            # The fence waited out `lock_timeout`: another replica holds the lease row (it took
            # the lease, or is inside a batch of its own), so ours is gone.
            self._refused()
            return 0
        if moved:
            BATCHES.inc()
            SEQUENCED.inc(moved)
            for delay in delays:
                SEQUENCING_DELAY.observe(delay)
            if self._bus is not None:
                await self._bus.publish_batch(events)
        return int(moved)

    def _refused(self) -> None:
        REFUSED.inc()
        logger.warning("sequencer batch refused: the lease was lost")
        self._step_down()

    def _step_down(self) -> None:
        if self.epoch is not None:
            logger.warning("sequencer lease lost", extra={"epoch": self.epoch})
        self.epoch = None
        LEADER.set(0)

    async def _release(self) -> None:
        """Give the lease up at shutdown, so another replica takes over at once."""
        if self._connection is not None and self.epoch is not None:
            # Any error: the connection may be broken in ways asyncpg reports oddly
            # (InternalClientError after a backend was terminated), and the lease then simply
            # runs out.
            with contextlib.suppress(Exception):
                await self._connection.execute(_RELEASE, self.holder, self.epoch, timeout=1.0)
        self._step_down()
        await self._close()

    async def _close(self) -> None:
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None
