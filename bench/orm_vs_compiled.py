"""What the ORM path costs against compiled statements, on routes of the same shape: comments
(SQLAlchemy's async ORM, the default for a resource) against tasks (Core statements compiled
once, run on asyncpg), measured with wrk against one api-service process.

  create   POST a comment vs POST a task: auth, role check, insert, event, commit
  read     GET one comment vs GET one task: auth, the row joined with the caller's membership
  list     GET a page of 50 comments vs a page of 50 tasks

Scenarios alternate within each round and each ratio is taken within a round (the machine
drifts by ±10% over minutes); the median is reported. 127.0.0.1 only.

    uv run python -m bench.orm_vs_compiled [--seconds 5] [--connections 32] [--rounds 3]
    uv run python -m bench.orm_vs_compiled --quick
"""

import argparse
import asyncio
import os
import shutil
import statistics

import httpx

from bench.api_throughput import MIGRATIONS, prepare, refresh_statistics, run_wrk, wrk_script
from devstack.testing import fresh_database, uvicorn_process

PAIRS = ("create", "read", "list")


async def seed_comments(api_url: str, token: str, board_id: str) -> tuple[str, str]:
    """A task with 60 comments on the benchmark's board: (the task's id, a comment's id)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as client:
        task = (await client.post(f"/api/boards/{board_id}/tasks", json={"title": "t"})).json()
        comment_ids = [
            (await client.post(f"/api/tasks/{task['id']}/comments", json={"body": f"c{n}"})).json()[
                "id"
            ]
            for n in range(60)
        ]
    return task["id"], comment_ids[0]


async def main(seconds: float, connections: int, rounds: int) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    async with fresh_database("bench_orm", MIGRATIONS) as url:
        env = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        async with uvicorn_process("auth_service.main:app", env) as auth_url:
            api_env = {**env, "JWKS_URL": f"{auth_url}/auth/.well-known/jwks.json"}
            async with uvicorn_process("api_service.main:app", api_env) as api:
                token, board_id = await prepare(auth_url, api)
                task_id, comment_id = await seed_comments(api, token, board_id)
                get = wrk_script("GET", token, None)
                scenarios = {
                    ("create", "orm"): (
                        f"{api}/api/tasks/{task_id}/comments",
                        wrk_script("POST", token, '{"body": "benchmark comment"}'),
                    ),
                    ("create", "compiled"): (
                        f"{api}/api/boards/{board_id}/tasks",
                        wrk_script("POST", token, '{"title": "benchmark task"}'),
                    ),
                    ("read", "orm"): (f"{api}/api/comments/{comment_id}", get),
                    ("read", "compiled"): (f"{api}/api/tasks/{task_id}", get),
                    ("list", "orm"): (f"{api}/api/tasks/{task_id}/comments?limit=50", get),
                    ("list", "compiled"): (f"{api}/api/boards/{board_id}/tasks?limit=50", get),
                }
                ratios: dict[str, list[float]] = {pair: [] for pair in PAIRS}
                for round_number in range(1, rounds + 1):
                    print(f"round {round_number}")
                    rps = {}
                    for (pair, path), (target, script) in scenarios.items():
                        await refresh_statistics(url)
                        result = await asyncio.to_thread(
                            run_wrk, target, script, seconds, connections
                        )
                        rps[pair, path] = result["rps"]
                        print(
                            f"  {pair:<6} {path:<8} {result['rps']:9.1f} req/s"
                            f"   p50 {result['p50']:7.2f} ms   p99 {result['p99']:7.2f} ms"
                            f"   non-2xx {int(result['errors'])}"
                        )
                    for pair in PAIRS:
                        ratios[pair].append(rps[pair, "orm"] / rps[pair, "compiled"])
                for pair in PAIRS:
                    print(
                        f"median {pair:<6} orm / compiled = {statistics.median(ratios[pair]):.2f}"
                    )
                print(
                    f"wrk: 1 thread, {connections} connections, {seconds:.0f} s per scenario,"
                    f" {rounds} rounds; cores: {os.cpu_count()} shared by wrk, the services and"
                    " PostgreSQL"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round of 2 s per scenario")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
    asyncio.run(main(args.seconds, args.connections, args.rounds))
