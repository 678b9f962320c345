"""Soak (issue 21): does an aged database, never vacuumed, stay as fast as a fresh one?

Two native stacks run side by side, at the same time, on one PostgreSQL cluster of the
benchmark's own with autovacuum off (as on the machine where the latency trap was found): one
on a fresh database, one on a database aged first with `--events` events in the log and as
many dead rows in the event inbox, never analysed. Each gets its own subscribers (lean SSE
clients through its gateway) and a writer creating tasks at `--rate` a second through the
gateway, for `--minutes`. Running both at once puts the machine's noise on both alike.

Printed and saved (bench/results/soak-*.json; bench/plots/soak.png):
- before the load, on the aged database: the sequencer's batch statement under EXPLAIN
  ANALYZE with JIT on (PostgreSQL's default) and off (what the services set), and with the
  inbox's dead rows before and after the vacuum the sequencer runs past its bound;
- per minute and stack: delivery p50/p99 (from the create response to the event reaching the
  last subscriber) and the batch statement's mean time (pg_stat_statements);
- every 10 s: the inbox's live rows, dead tuples and size.

    uv run python -m bench.soak [--quick]

Bounded: the load runs `--minutes` (10; quick 1), every wait has a timeout; 127.0.0.1 only.
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvloop

from bench.event_pipeline import Subscriber, percentile, sign_up, stack_on
from devstack.launcher import MIGRATIONS, NativeStack
from devstack.pgcluster import Cluster, own_cluster
from eventlog.tables import INBOX, LEASE, LOG
from servicekit.db import asyncpg_dsn
from servicekit.migrate import main as migrate

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results"
PLOTS = ROOT / "bench" / "plots"
# The sequencer's batch statement, as pg_stat_statements normalises it.
BATCH_STATEMENT = f"%DELETE FROM {INBOX} AS i USING settled%"
SAMPLE_SECONDS = 10


def batch_statements() -> dict[str, str]:
    """The sequencer's batch statement as the service runs it, and its form before issue 21
    (numbered from a cross join with the lease table) as the reference."""
    from eventlog.sequencer import _MOVE_AND_NOTIFY

    scalar = f"SELECT (SELECT sequenced_through FROM {LEASE})\n                    + row_number()"
    joined = _MOVE_AND_NOTIFY.replace(scalar, "SELECT lease.sequenced_through + row_number()")
    joined = joined.replace("FROM moved AS m\n", f"FROM moved AS m, {LEASE} AS lease\n")
    if joined.count(f"{LEASE} AS lease") != 1 or "lease.sequenced_through" not in joined:
        raise RuntimeError("the sequencer's batch statement changed: update the reference")
    return {"current": _MOVE_AND_NOTIFY, "before": joined}


async def prepare_cluster(cluster: Cluster) -> None:
    """autovacuum off and pg_stat_statements loaded, before the cluster first starts."""
    conf = cluster.data_dir / "data" / "postgresql.conf"
    with conf.open("a") as settings:
        settings.write("autovacuum = off\nshared_preload_libraries = 'pg_stat_statements'\n")
    await cluster.start()


async def create_database(cluster: Cluster, name: str) -> str:
    url = cluster.url(name)
    await migrate(MIGRATIONS, url)
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute("CREATE EXTENSION pg_stat_statements")
    finally:
        await connection.close()
    return url


async def age(url: str, events: int) -> None:
    """`events` rows in the log and as many dead rows in the inbox; nothing analysed."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(
            f"INSERT INTO {LOG} (id, channel, type, data, actor_id, created_at)"
            " SELECT g, 'board:' || md5((g % 5000)::text)::uuid, 'task.created',"
            " jsonb_build_object('title', 'aged ' || g), md5(g::text)::uuid, now()"
            " FROM generate_series(1, $1) AS g",
            events,
        )
        await connection.execute(f"UPDATE {LEASE} SET sequenced_through = $1", events)
        await connection.execute(
            f"INSERT INTO {INBOX} (channel, type, data, actor_id)"
            " SELECT 'board:' || md5(g::text)::uuid, 'task.created', '{}'::jsonb,"
            " md5(g::text)::uuid"
            " FROM generate_series(1, $1) AS g",
            events,
        )
        await connection.execute(f"DELETE FROM {INBOX}")
    finally:
        await connection.close()


async def explain_batch_ms(url: str, statement: str, jit: bool) -> dict[str, float]:
    """The batch statement's execution and JIT time (ms), the median of three runs (each
    rolled back)."""
    runs = [await explain_batch_once(url, statement, jit) for _ in range(3)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def explain_batch_once(url: str, statement: str, jit: bool) -> dict[str, float]:
    """As the sequencer runs it: a prepared statement, which PostgreSQL plans generically
    (without the LIMIT's value) from its sixth run on; forced here from the first."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with connection.transaction():
            await connection.execute(f"SET LOCAL jit = {'on' if jit else 'off'}")
            await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await connection.execute(f"PREPARE batch(bigint) AS {statement}")
            plan = await connection.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE batch(1000)")
            raise _RollBack(json.loads(plan)[0])
    except _RollBack as rolled_back:
        result = rolled_back.plan
    finally:
        await connection.close()
    jit_timing = result.get("JIT", {}).get("Timing", {}).get("Total", 0.0)
    return {
        "execution_ms": result["Execution Time"],
        "jit_ms": jit_timing,
        "estimated_cost": result["Plan"]["Total Cost"],
    }


class _RollBack(Exception):
    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan


async def inbox_state(url: str) -> dict[str, float]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await connection.fetchrow(
            f"SELECT count(*) AS live, pg_stat_get_dead_tuples('{INBOX}'::regclass) AS dead,"
            f" pg_total_relation_size('{INBOX}') AS bytes FROM {INBOX}"
        )
        assert row is not None
        return {"live": row["live"], "dead": row["dead"], "bytes": row["bytes"]}
    finally:
        await connection.close()


async def batch_statement_totals(url: str) -> tuple[float, int]:
    """Total execution ms and calls of the batch statement in this database so far."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await connection.fetchrow(
            "SELECT coalesce(sum(total_exec_time), 0) AS ms, coalesce(sum(calls), 0) AS calls"
            " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
            " WHERE datname = current_database()) AND query LIKE $1",
            BATCH_STATEMENT,
        )
        assert row is not None
        return float(row["ms"]), int(row["calls"])
    finally:
        await connection.close()


@dataclass
class Soaked:
    name: str
    url: str
    stack: NativeStack
    responded: dict[int, float] = field(default_factory=dict)
    arrivals: dict[int, list[float]] = field(default_factory=dict)
    samples: list[dict[str, float]] = field(default_factory=list)
    statement_minutes: list[dict[str, float]] = field(default_factory=list)


async def write(soaked: Soaked, token: str, board_id: str, rate: float, seconds: float) -> None:
    async with httpx.AsyncClient(
        base_url=soaked.stack.config.gateway_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as api:
        started = time.monotonic()
        k = 0
        while time.monotonic() - started < seconds:
            response = await api.post(f"/api/boards/{board_id}/tasks", json={"title": f"m{k}"})
            if response.status_code == 201:
                soaked.responded[k] = time.time()
            k += 1
            await asyncio.sleep(max(0.0, started + k / rate - time.monotonic()))


async def sample(soaked: Soaked, started: float, seconds: float) -> None:
    last_ms, last_calls = await batch_statement_totals(soaked.url)
    minute_end = started + 60
    while time.time() - started < seconds:
        await asyncio.sleep(SAMPLE_SECONDS)
        state = await inbox_state(soaked.url)
        soaked.samples.append({"t": round(time.time() - started, 1), **state})
        if time.time() >= minute_end or time.time() - started >= seconds:
            ms, calls = await batch_statement_totals(soaked.url)
            soaked.statement_minutes.append(
                {
                    "calls": calls - last_calls,
                    "mean_ms": (ms - last_ms) / max(1, calls - last_calls),
                }
            )
            last_ms, last_calls = ms, calls
            minute_end += 60


async def soak(soaked: Soaked, subscribers: int, rate: float, seconds: float) -> None:
    token, board_id = await sign_up(soaked.stack.config.gateway_url)
    clients = [Subscriber(soaked.arrivals) for _ in range(subscribers)]
    path = f"/realtime/sse?channels=board:{board_id}"
    port = soaked.stack.config.gateway_port
    reading = [asyncio.create_task(client.run(port, path, token)) for client in clients]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 120)
        started = time.time()
        soaked.samples.append({"t": 0.0, **await inbox_state(soaked.url)})
        await asyncio.gather(
            write(soaked, token, board_id, rate, seconds), sample(soaked, started, seconds)
        )
        await asyncio.sleep(3)
    finally:
        for task in reading:
            task.cancel()
    soaked.responded = {k: t - started for k, t in soaked.responded.items()}
    soaked.arrivals = {
        k: [t - started for t in times]
        for k, times in soaked.arrivals.items()
        if len(times) >= subscribers
    }


def minutes(soaked: Soaked, duration_minutes: float) -> list[dict[str, float]]:
    by_minute: dict[int, list[float]] = {}
    for k, responded in soaked.responded.items():
        # A write sent just as the window closed belongs to none of its minutes.
        if k in soaked.arrivals and responded < duration_minutes * 60:
            latency = (max(soaked.arrivals[k]) - responded) * 1000
            by_minute.setdefault(int(responded // 60), []).append(latency)
    rows = []
    for minute, latencies in sorted(by_minute.items()):
        statement = (
            soaked.statement_minutes[minute] if minute < len(soaked.statement_minutes) else {}
        )
        rows.append(
            {
                "minute": minute + 1,
                "events": len(latencies),
                "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99),
                "statement_mean_ms": statement.get("mean_ms", float("nan")),
            }
        )
    return rows


def plot(record: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, inbox) = plt.subplots(2, 1, figsize=(8, 7))
    for name, result in record["stacks"].items():
        rows = result["minutes"]
        latency.plot([r["minute"] for r in rows], [r["p99_ms"] for r in rows], label=f"{name} p99")
        latency.plot(
            [r["minute"] for r in rows], [r["p50_ms"] for r in rows], "--", label=f"{name} p50"
        )
        samples = result["inbox"]
        inbox.plot([s["t"] for s in samples], [s["dead"] for s in samples], label=f"{name} dead")
        inbox.plot(
            [s["t"] for s in samples], [s["live"] for s in samples], ":", label=f"{name} live"
        )
    latency.set(
        xlabel="minute", ylabel="delivery latency (ms)", title="Delivery through the gateway"
    )
    inbox.set(xlabel="seconds", ylabel="inbox rows", yscale="symlog", title="Event inbox")
    latency.legend()
    inbox.legend()
    figure.tight_layout()
    figure.savefig(out)


async def main(quick: bool, events: int, subscribers: int, rate: float, minutes_: float) -> None:
    record: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "load_before": os.getloadavg(),
        "quick": quick,
        "events_aged": events,
        "subscribers": subscribers,
        "rate": rate,
        "minutes": minutes_,
    }
    with own_cluster() as cluster:
        await prepare_cluster(cluster)
        fresh_url = await create_database(cluster, "soak_fresh")
        aged_url = await create_database(cluster, "soak_aged")
        began = time.monotonic()
        await age(aged_url, events)
        print(f"aged: {events:,} events and inbox dead rows in {time.monotonic() - began:.0f} s")
        before = await inbox_state(aged_url)
        statements = batch_statements()
        await explain_batch_once(aged_url, statements["current"], jit=False)  # into the cache
        record["batch_statement"] = {
            "inbox_before_vacuum": before,
            "before_jit_on": await explain_batch_ms(aged_url, statements["before"], jit=True),
            "current_jit_on": await explain_batch_ms(aged_url, statements["current"], jit=True),
            "current_jit_off": await explain_batch_ms(aged_url, statements["current"], jit=False),
        }
        async with (
            stack_on("soak-fresh", fresh_url) as fresh,
            stack_on("soak-aged", aged_url) as aged,
        ):
            # The sequencer vacuums the inbox past its bound on its first check.
            deadline = time.monotonic() + 120
            while (await inbox_state(aged_url))["dead"] > 10_000 and time.monotonic() < deadline:  # noqa: ASYNC110 (polls the database)
                await asyncio.sleep(1)
            record["batch_statement"]["current_jit_off_after_vacuum"] = await explain_batch_ms(
                aged_url, statements["current"], jit=False
            )
            record["batch_statement"]["inbox_after_vacuum"] = await inbox_state(aged_url)
            print("the batch statement on the aged database (generic plan, median of 3):")
            for name, figures in record["batch_statement"].items():
                print(f"  {name}: {figures}")
            stacks = [Soaked("fresh", fresh_url, fresh), Soaked("aged", aged_url, aged)]
            await asyncio.gather(*(soak(s, subscribers, rate, minutes_ * 60) for s in stacks))
        await cluster.stop()
    record["stacks"] = {
        s.name: {"minutes": minutes(s, minutes_), "inbox": s.samples, "written": len(s.responded)}
        for s in stacks
    }
    record["load_after"] = os.getloadavg()
    for name, result in record["stacks"].items():
        for row in result["minutes"]:
            print(
                f"{name:<6} minute {row['minute']:>2}: {row['events']:>5} events"
                f"  p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms"
                f"  batch statement {row['statement_mean_ms']:.2f} ms"
            )
        last = result["inbox"][-1]
        print(f"{name:<6} inbox at the end: {last['live']:.0f} live, {last['dead']:.0f} dead")
    fresh_last = record["stacks"]["fresh"]["minutes"][-1]["p99_ms"]
    aged_last = record["stacks"]["aged"]["minutes"][-1]["p99_ms"]
    print(f"last minute p99, aged / fresh: {aged_last / fresh_last:.2f}x (target <= 1.5x)")
    print(f"load average before {record['load_before']}, after {record['load_after']}")
    RESULTS.mkdir(exist_ok=True)
    PLOTS.mkdir(exist_ok=True)
    stamp = record["started"].replace(":", "")
    out = RESULTS / f"soak-{stamp}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    plot(record, PLOTS / ("soak-quick.png" if quick else "soak.png"))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k events, 100 subscribers, 1 min")
    arguments = parser.parse_args()
    if arguments.quick:
        uvloop.run(main(True, events=100_000, subscribers=100, rate=20.0, minutes_=1.0))
    else:
        uvloop.run(main(False, events=1_000_000, subscribers=500, rate=20.0, minutes_=10.0))
