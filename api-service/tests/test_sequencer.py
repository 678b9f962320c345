"""The sequencer with three api replicas as real processes on their own database: the ordering
proof under concurrent writers on every replica, and failover when the leader is killed or
paused past its lease (its late batch refused)."""

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from api_service.config import Settings
from devstack.pgcluster import own_cluster
from devstack.testing import (
    ServiceProcess,
    events_sequenced,
    fresh_database,
    uvicorn_process,
    uvicorn_service,
)
from eventlog.sequencer import Sequencer
from eventlog.writer import events_committed
from servicekit.db import asyncpg_dsn

from .conftest import MIGRATIONS, PASSWORD, User

# Left out of `make test-fast` (docs/testing.md): three api processes, killed and paused.
pytestmark = pytest.mark.slow

LEASE_SECONDS = 2.0
REFUSED_TOTAL = "api_outbox_refused_batches_total"
REPLICAS = 3


@dataclass
class Cluster:
    dsn: str
    replicas: list[ServiceProcess]
    users: list[User]
    boards: list[str] = field(default_factory=list)

    async def leader(self, timeout: float = 10.0) -> ServiceProcess:
        """The replica holding an unexpired lease (its pid is part of the holder's name)."""
        deadline = time.monotonic() + timeout
        while True:
            row = await fetchrow(
                self.dsn,
                "SELECT holder FROM eventlog.sequencer_lease WHERE expires_at > clock_timestamp()",
            )
            if row is not None:
                pid = int(row["holder"].split(":")[1])
                for replica in self.replicas:
                    if replica.pid == pid:
                        return replica
            assert time.monotonic() < deadline, "no replica holds the lease"
            await asyncio.sleep(0.05)


async def fetchrow(dsn: str, query: str, *args: object) -> asyncpg.Record | None:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchrow(query, *args)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    async with fresh_database("seq", MIGRATIONS) as url, AsyncExitStack() as stack:
        env = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        auth_url = await stack.enter_async_context(uvicorn_process("auth_service.main:app", env))
        env |= {
            "JWKS_URL": f"{auth_url}/auth/.well-known/jwks.json",
            "SEQUENCER_LEASE_SECONDS": str(LEASE_SECONDS),
        }
        # One after another: three interpreters starting at once on a loaded machine can
        # outlast the readiness timeout.
        replicas = [
            await stack.enter_async_context(uvicorn_service("api_service.main:app", env))
            for _ in range(REPLICAS)
        ]
        users = []
        async with httpx.AsyncClient(base_url=auth_url) as auth:
            for i in range(1):
                email = f"seq-{os.getpid()}-{i}@example.com"
                registered = await auth.post(
                    "/auth/register", json={"email": email, "password": PASSWORD}
                )
                token = await auth.post(
                    "/auth/token",
                    data={"grant_type": "password", "username": email, "password": PASSWORD},
                )
                users.append(User(registered.json()["id"], token.json()["access_token"]))
        cluster = Cluster(asyncpg_dsn(url), list(replicas), users)
        async with httpx.AsyncClient(base_url=replicas[0].url) as api:
            for i in range(5):
                created = await api.post(
                    "/api/boards", json={"name": f"b{i}"}, headers=users[0].headers
                )
                assert created.status_code == 201, created.text
                cluster.boards.append(created.json()["id"])
        try:
            yield cluster
        finally:
            for replica in cluster.replicas:
                with suppress(ProcessLookupError):
                    os.kill(replica.pid, signal.SIGCONT)


async def settled(dsn: str) -> None:
    await events_sequenced(dsn, timeout=20.0)


class Reader:
    """Tails the whole log as realtime does (`id > cursor ORDER BY id`) until stopped."""

    def __init__(self, dsn: str, start: int) -> None:
        self.dsn, self.cursor = dsn, start
        self.seen: list[int] = []
        self.reads = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            while True:
                finished = self.stop.is_set()
                rows = await connection.fetch(
                    "SELECT id FROM eventlog.events WHERE id > $1 ORDER BY id", self.cursor
                )
                self.reads += 1
                self.seen.extend(row["id"] for row in rows)
                if rows:
                    self.cursor = rows[-1]["id"]
                if finished:
                    return
                await asyncio.sleep(0.005)
        finally:
            await connection.close()


async def write_once(
    client: httpx.AsyncClient, board_id: str, user: User, rng: random.Random, tasks: list[str]
) -> None:
    """Create a task or update one of `tasks`, asserting it committed (writes go to replicas
    that stay up: the leader that is killed or paused is never sent writes in these tests)."""
    if tasks and rng.random() < 0.5:
        response = await client.patch(
            f"/api/tasks/{rng.choice(tasks)}",
            json={"status": rng.choice(["todo", "doing", "done"])},
            headers=user.headers,
        )
        assert response.status_code == 200, response.text
    else:
        response = await client.post(
            f"/api/boards/{board_id}/tasks", json={"title": "t"}, headers=user.headers
        )
        assert response.status_code == 201, response.text
        tasks.append(response.json()["id"])


async def log_ids(dsn: str, after: int) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT id FROM eventlog.events WHERE id > $1 ORDER BY id", after
        )
    finally:
        await connection.close()
    return [row["id"] for row in rows]


def check_readers(readers: list[Reader], committed: list[int], writes: int, start: int) -> None:
    assert committed == list(range(start + 1, start + writes + 1)), "log ids are not dense"
    for reader in readers:
        assert reader.seen == committed, "a reader missed, repeated or reordered events"
        assert reader.reads > 5, "the reader did not read while writers wrote"


async def start_readers(cluster: Cluster, count: int = 3) -> tuple[list[Reader], int]:
    await settled(cluster.dsn)
    row = await fetchrow(cluster.dsn, "SELECT sequenced_through FROM eventlog.sequencer_lease")
    assert row is not None
    start = row["sequenced_through"]
    readers = [Reader(cluster.dsn, start) for _ in range(count)]
    return readers, start


async def test_three_replicas_writers_never_see_a_gap_or_reorder(cluster: Cluster) -> None:
    writers, writes_each = 50, 20
    readers, start = await start_readers(cluster)
    reading = [asyncio.create_task(reader.run()) for reader in readers]
    clients = [httpx.AsyncClient(base_url=r.url, timeout=30) for r in cluster.replicas]

    async def writer(index: int) -> None:
        rng, tasks = random.Random(index), list[str]()
        client = clients[index % REPLICAS]
        for _ in range(writes_each):
            await write_once(client, cluster.boards[index % 5], cluster.users[0], rng, tasks)

    try:
        await asyncio.gather(*(writer(i) for i in range(writers)))
    finally:
        for client in clients:
            await client.aclose()
    await settled(cluster.dsn)
    for reader in readers:
        reader.stop.set()
    await asyncio.gather(*reading)
    check_readers(readers, await log_ids(cluster.dsn, start), writers * writes_each, start)


async def write_until(
    replicas: list[ServiceProcess], cluster: Cluster, stop: asyncio.Event, writers: int = 8
) -> int:
    """Writers on `replicas` until `stop`; the number of committed writes."""
    committed = 0

    async def writer(index: int) -> None:
        nonlocal committed
        rng, tasks = random.Random(index), list[str]()
        async with httpx.AsyncClient(
            base_url=replicas[index % len(replicas)].url, timeout=30
        ) as client:
            while not stop.is_set():
                await write_once(client, cluster.boards[index % 5], cluster.users[0], rng, tasks)
                committed += 1

    await asyncio.gather(*(writer(i) for i in range(writers)))
    return committed


async def lease_holder(dsn: str) -> tuple[str, int]:
    row = await fetchrow(dsn, "SELECT holder, epoch FROM eventlog.sequencer_lease")
    assert row is not None
    return row["holder"], row["epoch"]


async def wait_for_new_holder(dsn: str, old_epoch: int, timeout: float) -> float:
    """Seconds until a lease with a later epoch than `old_epoch` is held."""
    started = time.monotonic()
    while (await lease_holder(dsn))[1] == old_epoch:
        assert time.monotonic() - started < timeout, "no replica took the lease over"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def metric(replica: ServiceProcess, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{replica.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise LookupError(name)


async def test_leader_paused_past_its_lease_has_its_late_batch_refused(cluster: Cluster) -> None:
    paused = await cluster.leader()
    successor_pool = [r for r in cluster.replicas if r is not paused]
    readers, start = await start_readers(cluster)
    reading = [asyncio.create_task(reader.run()) for reader in readers]
    _, epoch = await lease_holder(cluster.dsn)
    # Paused while idle (between polls), not inside a batch transaction.
    os.kill(paused.pid, signal.SIGSTOP)
    stop = asyncio.Event()
    writing = asyncio.create_task(write_until(successor_pool, cluster, stop))
    takeover = await wait_for_new_holder(cluster.dsn, epoch, timeout=4 * LEASE_SECONDS)
    successor = await cluster.leader()
    assert successor is not paused
    # Pause the successor too, so settled rows wait in the inbox when the old leader resumes:
    # its first act is a batch, fenced by a lease it no longer holds.
    stop.set()
    writes = await writing
    os.kill(successor.pid, signal.SIGSTOP)
    bystander = next(r for r in successor_pool if r is not successor)
    writes += await few_writes(bystander, cluster, 5)
    os.kill(paused.pid, signal.SIGCONT)
    refused = await wait_for_metric(paused, "api_outbox_refused_batches_total", timeout=10)
    os.kill(successor.pid, signal.SIGCONT)
    await settled(cluster.dsn)
    for reader in readers:
        reader.stop.set()
    await asyncio.gather(*reading)

    assert takeover <= LEASE_SECONDS + LEASE_SECONDS / 3 + 1.0
    assert refused >= 1, "the resumed leader's late batch was not refused"
    assert (await lease_holder(cluster.dsn))[1] > epoch
    await cluster.leader()  # a leader again, the resumed replicas with the others
    check_readers(readers, await log_ids(cluster.dsn, start), writes, start)


async def test_leader_killed_mid_stream_another_takes_over(cluster: Cluster) -> None:
    # Last in the module: the cluster keeps two replicas after it.
    leader = await cluster.leader()
    others = [r for r in cluster.replicas if r is not leader]
    readers, start = await start_readers(cluster)
    reading = [asyncio.create_task(reader.run()) for reader in readers]
    stop = asyncio.Event()
    writing = asyncio.create_task(write_until(others, cluster, stop))
    await asyncio.sleep(1.5)
    _, epoch = await lease_holder(cluster.dsn)
    os.kill(leader.pid, signal.SIGKILL)
    takeover = await wait_for_new_holder(cluster.dsn, epoch, timeout=4 * LEASE_SECONDS)
    await asyncio.sleep(1.5)
    stop.set()
    writes = await writing
    await settled(cluster.dsn)
    for reader in readers:
        reader.stop.set()
    await asyncio.gather(*reading)

    assert takeover <= LEASE_SECONDS + LEASE_SECONDS / 3 + 1.0
    assert (await cluster.leader()) in others
    check_readers(readers, await log_ids(cluster.dsn, start), writes, start)


async def few_writes(replica: ServiceProcess, cluster: Cluster, count: int) -> int:
    rng, tasks = random.Random(0), list[str]()
    async with httpx.AsyncClient(base_url=replica.url, timeout=10) as client:
        for _ in range(count):
            await write_once(client, cluster.boards[0], cluster.users[0], rng, tasks)
    return count


async def wait_for_metric(replica: ServiceProcess, name: str, timeout: float) -> float:
    """The metric's value once it is above zero (or its value at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await metric(replica, name)
        if value > 0 or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def test_a_fence_kept_waiting_by_another_replica_refuses_its_batch() -> None:
    """The fence waits at most `lock_timeout` for the lease row: held by another replica (one
    taking the lease over, or inside its own batch), the batch is refused, not retried."""
    async with fresh_database("fence", MIGRATIONS) as url:
        dsn = asyncpg_dsn(url)
        sequencer = Sequencer(dsn, Settings(database_url=url), None)
        sequencer._connection = await asyncpg.connect(dsn, server_settings={"lock_timeout": "200"})
        other = await asyncpg.connect(dsn)
        try:
            assert await sequencer._acquire()
            await other.execute(
                "INSERT INTO eventlog.event_inbox (channel, type, data, actor_id)"
                " VALUES ('board:x', 'task.created', '{}', gen_random_uuid())"
            )
            refused = REGISTRY.get_sample_value(REFUSED_TOTAL) or 0
            async with other.transaction():
                await other.execute("SELECT FROM eventlog.sequencer_lease FOR UPDATE")
                assert await sequencer._move_batch() == 0
            assert sequencer.epoch is None
            assert REGISTRY.get_sample_value(REFUSED_TOTAL) == refused + 1
            assert await other.fetchval("SELECT count(*) FROM eventlog.event_inbox") == 1
            assert await other.fetchval("SELECT count(*) FROM eventlog.events") == 0
        finally:
            await other.close()
            await sequencer._release()


async def test_a_commit_of_this_replica_cuts_the_idle_poll_short() -> None:
    """Backed off to a long poll, the sequencer still moves this replica's events at once: the
    commit nudges it (events_committed). On a cluster of its own: a row is moved once no older
    transaction can still commit, and another test's open transaction on a shared cluster would
    hold it back until a later poll (a failure seen in CI, 4 s instead of under 0.5 s)."""
    with own_cluster() as cluster:
        await cluster.start()
        async with fresh_database("nudge", MIGRATIONS, cluster.admin_url) as url:
            await nudged_sequencer_moves_at_once(url)


async def nudged_sequencer_moves_at_once(url: str) -> None:
    dsn = asyncpg_dsn(url)
    settings = Settings(
        database_url=url, sequencer_poll_min_seconds=1.0, sequencer_poll_max_seconds=5.0
    )
    running = asyncio.create_task(Sequencer(dsn, settings, None).run())
    writer = await asyncpg.connect(dsn)
    try:
        for _ in range(3):
            await asyncio.sleep(1.5)  # an empty poll: the sleep has backed off to 2-5 s
            await writer.execute(
                "INSERT INTO eventlog.event_inbox (channel, type, data, actor_id)"
                " VALUES ('board:x', 'task.created', '{}', gen_random_uuid())"
            )
            committed = time.monotonic()
            events_committed(["task.created"])
            await events_sequenced(dsn, timeout=10.0)
            assert time.monotonic() - committed < 0.5
    finally:
        running.cancel()
        with suppress(asyncio.CancelledError):
            await running
        await writer.close()
