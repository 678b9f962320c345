"""Login throughput of a real auth-service process (one uvicorn worker) on a fresh database.

argon2id is slow by design (~64 MiB and tens of ms of CPU per hash), so this measures how many
password logins one process sustains, and, for contrast, authenticated GET /auth/users/me.
Traffic goes to 127.0.0.1 only and every phase is bounded in time.

    uv run python bench/login_throughput.py [--seconds 10] [--concurrency 8]
"""

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from devstack.testing import fresh_database, uvicorn_process

MIGRATIONS = Path(__file__).parents[1] / "auth-service" / "migrations"
PASSWORD = "benchmark password"


async def run_for(
    seconds: float, concurrency: int, request: Callable[[], Awaitable[httpx.Response]]
) -> tuple[int, int, list[float]]:
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await request()
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), failures, latencies


def report(name: str, seconds: float, done: int, failures: int, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    print(
        f"{name:<22} {done / seconds:8.1f} req/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms"
        f"   ({done} requests, {failures} failed)"
    )


async def main(seconds: float, concurrency: int) -> None:
    async with fresh_database("bench_auth", [MIGRATIONS]) as url:
        env = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        async with (
            uvicorn_process("auth_service.main:app", env) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        ):
            await measure(client, seconds, concurrency)


async def measure(client: httpx.AsyncClient, seconds: float, concurrency: int) -> None:
    emails = [f"bench-{uuid.uuid4().hex[:10]}@example.com" for _ in range(concurrency)]
    for email in emails:
        await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    turn = 0

    def login() -> Awaitable[httpx.Response]:
        nonlocal turn
        turn += 1
        form = {"grant_type": "password", "username": emails[turn % len(emails)]}
        return client.post("/auth/token", data={**form, "password": PASSWORD})

    def read_me() -> Awaitable[httpx.Response]:
        return client.get("/auth/users/me", headers=headers)

    cpu_before = os.times()
    report("POST /auth/token", seconds, *await run_for(seconds, concurrency, login))
    headers = {"Authorization": f"Bearer {(await login()).json()['access_token']}"}
    report("GET /auth/users/me", seconds, *await run_for(seconds, concurrency, read_me))
    cpu = os.times()
    used = (cpu.user - cpu_before.user) + (cpu.system - cpu_before.system)
    print(f"load generator CPU: {used:.1f} s over {2 * seconds:.0f} s of load")
    print(f"cores: {os.cpu_count()}, concurrency: {concurrency}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency))
