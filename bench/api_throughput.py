"""api-service write and read throughput against bare FastAPI ceilings, measured with wrk.

Scenarios, each for --seconds with --connections keep-alive connections from one wrk thread:
  create-task   POST /api/boards/{id}/tasks (auth, access check, insert, outbox event, commit)
  bare-insert   POST /insert on a bare FastAPI + asyncpg app (one INSERT ... RETURNING)
  list-tasks    GET /api/boards/{id}/tasks?limit=50 (auth, access check, keyset page of 50)
  bare-ping     GET /ping on the same bare app
Targets: create-task >= 0.6x bare-insert, list-tasks >= 0.5x bare-ping. 127.0.0.1 only.

    uv run python -m bench.api_throughput [--seconds 10] [--connections 32] [--rounds 3]
"""

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from devstack.testing import fresh_database, uvicorn_process
from eventlog import MIGRATIONS as LOG_MIGRATIONS
from servicekit.db import asyncpg_dsn

ROOT = Path(__file__).parents[1]
MIGRATIONS = [
    ROOT / "auth-service" / "migrations",
    ROOT / "api-service" / "migrations",
    LOG_MIGRATIONS,
]
PASSWORD = "benchmark password"


def wrk_script(method: str, token: str | None, body: str | None) -> str:
    lines = [f'wrk.method = "{method}"', 'wrk.headers["Content-Type"] = "application/json"']
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    if body:
        lines.append(f"wrk.body = '{body}'")
    return "\n".join(lines) + "\n"


def run_wrk(url: str, script: str, seconds: float, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        output = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{int(seconds)}s",
                "--latency",
                "-s",
                handle.name,
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
    finally:
        os.unlink(handle.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": rps,
        "p50": to_ms(re.search(r"50%\s+([\d.]+\w+)", output).group(1)),  # type: ignore[union-attr]
        "p99": to_ms(re.search(r"99%\s+([\d.]+\w+)", output).group(1)),  # type: ignore[union-attr]
        "errors": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def prepare(auth_url: str, api_url: str) -> tuple[str, str]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(timeout=30) as client:
        await client.post(f"{auth_url}/auth/register", json={"email": email, "password": PASSWORD})
        token = (
            await client.post(
                f"{auth_url}/auth/token",
                data={"grant_type": "password", "username": email, "password": PASSWORD},
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        board = (
            await client.post(f"{api_url}/api/boards", json={"name": "bench"}, headers=headers)
        ).json()
        for i in range(60):
            await client.post(
                f"{api_url}/api/boards/{board['id']}/tasks",
                json={"title": f"seed {i}"},
                headers=headers,
            )
    return token, board["id"]


async def refresh_statistics(url: str) -> None:
    """ANALYZE, as autovacuum would within a minute: the write phases grow a board from 60 to
    tens of thousands of tasks in seconds, and with the statistics of an empty table the
    planner sorts the whole board for every page instead of reading the index in order."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def main(seconds: float, connections: int, rounds: int) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    async with fresh_database("bench_api", MIGRATIONS) as url:
        env = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        async with uvicorn_process("auth_service.main:app", env) as auth_url:
            api_env = {**env, "JWKS_URL": f"{auth_url}/auth/.well-known/jwks.json"}
            bare_env = {
                "BENCH_DSN": make_url(url).set(drivername="postgresql").render_as_string(False)
            }
            async with (
                uvicorn_process("api_service.main:app", api_env) as api_url,
                uvicorn_process("bench.bare_asyncpg_app:app", bare_env) as bare_url,
            ):
                token, board_id = await prepare(auth_url, api_url)
                body = '{"title": "benchmark task"}'
                scenarios = {
                    "create-task": (
                        f"{api_url}/api/boards/{board_id}/tasks",
                        wrk_script("POST", token, body),
                    ),
                    "bare-insert": (f"{bare_url}/insert", wrk_script("POST", None, body)),
                    "list-tasks": (
                        f"{api_url}/api/boards/{board_id}/tasks?limit=50",
                        wrk_script("GET", token, None),
                    ),
                    "bare-ping": (f"{bare_url}/ping", wrk_script("GET", None, None)),
                }
                # The machine's speed drifts by ±10% over minutes, so scenarios alternate in
                # rounds and each ratio is taken within a round; the median is reported.
                create_ratios, list_ratios = [], []
                for round_number in range(1, rounds + 1):
                    print(f"round {round_number}")
                    results = {}
                    for name, (target, script) in scenarios.items():
                        await refresh_statistics(url)
                        results[name] = await asyncio.to_thread(
                            run_wrk, target, script, seconds, connections
                        )
                        r = results[name]
                        print(
                            f"  {name:<12} {r['rps']:9.1f} req/s   p50 {r['p50']:7.2f} ms"
                            f"   p99 {r['p99']:7.2f} ms   non-2xx {int(r['errors'])}"
                        )
                    create_ratios.append(
                        results["create-task"]["rps"] / results["bare-insert"]["rps"]
                    )
                    list_ratios.append(results["list-tasks"]["rps"] / results["bare-ping"]["rps"])
                    print(
                        f"  create-task / bare-insert = {create_ratios[-1]:.2f},"
                        f" list-tasks / bare-ping = {list_ratios[-1]:.2f}"
                    )
                print(
                    f"median create-task / bare-insert = {statistics.median(create_ratios):.2f}"
                    " (target >= 0.6)"
                )
                print(
                    f"median list-tasks / bare-ping    = {statistics.median(list_ratios):.2f}"
                    " (target >= 0.5)"
                )
                print(
                    f"wrk: 1 thread, {connections} connections, {seconds:.0f} s per scenario,"
                    f" {rounds} rounds"
                )
                print(f"cores: {os.cpu_count()} shared by wrk, the services and PostgreSQL")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.connections, args.rounds))
