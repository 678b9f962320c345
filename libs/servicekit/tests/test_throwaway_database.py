"""A test run with no PostgreSQL at TEST_DATABASE_URL starts a throwaway cluster of its own
(conftest.py at the repository's root) and removes it when the run ends."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.testing import free_port

# Left out of `make test-fast` (docs/testing.md): a PostgreSQL cluster of its own.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[3]
A_TEST_ON_THE_DATABASE = (
    "libs/servicekit/tests/test_secrets_and_outages.py"
    "::test_a_failing_statement_does_not_carry_its_parameters"
)


def test_a_run_without_a_database_server_brings_its_own_and_removes_it() -> None:
    nobody_there = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/postgres"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", A_TEST_ON_THE_DATABASE],
        cwd=ROOT,
        env={**os.environ, "TEST_DATABASE_URL": nobody_there},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "1 passed" in run.stdout
    started = re.search(r"a throwaway cluster runs on port (\d+) .* in (\S+)", run.stderr)
    assert started is not None, run.stderr[-3000:]
    port, data_dir = int(started.group(1)), Path(started.group(2))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the cluster still runs"
    assert not data_dir.exists(), "the cluster's directory is left behind"
