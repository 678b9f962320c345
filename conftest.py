"""What every test run shares: the tiers (docs/testing.md) and the database server.

- Tests under `tests/` start the whole native stack (or use one at E2E_BASE_URL): they are
  marked `e2e`, and `make test-fast` leaves them out.
- Every process a test starts inherits the test-only settings below (each defaults to its
  production value outside tests; one test each runs that value).
- When no PostgreSQL answers at TEST_DATABASE_URL, the run starts a throwaway cluster of its
  own from the installed server binaries, on a free port, and removes it at the end."""

import asyncio
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from xdist.scheduler import LoadScopeScheduling

from devstack.pgcluster import own_cluster
from devstack.testing import admin_url
from servicekit.db import asyncpg_dsn

END_TO_END = Path(__file__).parent / "tests"
TEST_ONLY_SETTINGS = {
    # argon2id at 1 MiB and one pass instead of 64 MiB and three: a sign-up in milliseconds.
    # The production cost: auth-service/tests/test_register.py.
    "PASSWORD_HASH_MEMORY_KIB": "1024",
    "PASSWORD_HASH_ITERATIONS": "1",
    # Pools of 2 connections instead of 10: the processes of two workers share one PostgreSQL
    # and its 100 connections (the e2e stacks set their own sizes).
    "DB_POOL_SIZE": "2",
}
_throwaway_cluster = ExitStack()


# Modules under tests/ with stacks of their own whose logs are checked by the module itself
# (or kept outside var/): under pytest-xdist they run beside the end-to-end group, on the
# other worker.
BESIDE_THE_E2E_GROUP = (
    "tests/test_background_faults.py",
    "tests/test_database_outage.py",
    "tests/test_launcher.py",
)


class TierScheduling(LoadScopeScheduling):
    """`make test` on two workers: the end-to-end tests are two units of work, the clients'
    (tests/clients/, on stacks of their own, each checking its logs as it stops) and the rest
    (the session stack, its log check last), each run in order by one worker; every other
    module is a unit of its own. xdist hands units out largest first (by number of tests),
    so the two end-to-end units need not start at once nor run on different workers: keeping
    that order measured better than putting them first (docs/testing.md, Timings).
    (pytest-xdist's own `loadgroup` cannot be used: with pytest 9 it no longer sees the
    groups.)"""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        if path.startswith("tests/clients/"):
            return "e2e-clients"
        if path.startswith("tests/") and path not in BESIDE_THE_E2E_GROUP:
            return "e2e"
        return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> TierScheduling:
    return TierScheduling(config, log)


def pytest_itemcollected(item: pytest.Item) -> None:
    if item.path.is_relative_to(END_TO_END):
        item.add_marker(pytest.mark.e2e)


CLIENTS = END_TO_END / "clients"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tests first, the clients' after them (on one process, `-n 0`, the log
    check then runs before the clients' stacks, which check their own logs), then the rest.
    Last of the hooks, and a stable sort: the order tests/conftest.py gives within each (the
    log check last, the clients by stack) holds."""

    def tier(item: pytest.Item) -> int:
        if item.path.is_relative_to(CLIENTS):
            return 1
        return 0 if item.path.is_relative_to(END_TO_END) else 2

    items.sort(key=tier)


async def _answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(asyncpg_dsn(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


def pytest_configure(config: pytest.Config) -> None:
    for name, value in TEST_ONLY_SETTINGS.items():
        os.environ.setdefault(name, value)
    # xdist's workers inherit the controller's environment, cluster included.
    if hasattr(config, "workerinput") or asyncio.run(_answers(admin_url())):
        return
    cluster = _throwaway_cluster.enter_context(own_cluster())
    cluster.pg_ctl("start")
    os.environ["TEST_DATABASE_URL"] = cluster.admin_url
    print(
        f"conftest: no PostgreSQL at TEST_DATABASE_URL; a throwaway cluster runs on port "
        f"{cluster.port} for this run, in {cluster.data_dir}",
        file=sys.stderr,
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    _throwaway_cluster.close()
