"""A PostgreSQL cluster of the tests' own, in a temporary directory, from the installed server
binaries: one a test may stop and start (outages are never rehearsed on a shared server), or
the throwaway server of a test run when none answers at TEST_DATABASE_URL."""

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.testing import free_port


def _pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
        if not versions:
            raise RuntimeError(f"{name} is not installed (apt-get install postgresql)")
        found = str(versions[-1])
    return found


@dataclass
class Cluster:
    data_dir: Path
    port: int

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1"
            " -c max_connections=200 -c fsync=off -c shared_buffers=32MB"
        )
        command = [
            _pg_binary("pg_ctl"),
            "-D",
            str(self.data_dir / "data"),
            "-l",
            str(self.data_dir / "server.log"),
            "-w",
            "-o",
            options,
            *args,
        ]
        subprocess.run(_as_postgres(command), check=True, capture_output=True)

    async def start(self) -> None:
        await asyncio.to_thread(self.pg_ctl, "start")

    async def stop(self) -> None:
        """A fast shutdown: sessions are terminated, as when a server is restarted."""
        await asyncio.to_thread(self.pg_ctl, "stop", "-m", "fast")


def _as_postgres(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: root (CI) runs it as the postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A fresh, stopped cluster (trust authentication, user postgres), removed on exit."""
    data_dir = Path(tempfile.mkdtemp(prefix="pg-test-"))
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(data_dir, postgres.pw_uid, postgres.pw_gid)
    cluster = Cluster(data_dir, free_port())
    try:
        subprocess.run(
            _as_postgres(
                [
                    _pg_binary("initdb"),
                    "-D",
                    str(data_dir / "data"),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                ]
            ),
            check=True,
            capture_output=True,
        )
        yield cluster
    finally:
        subprocess.run(
            _as_postgres([_pg_binary("pg_ctl"), "-D", str(data_dir / "data"), "stop", "-m", "i"]),
            capture_output=True,
        )
        shutil.rmtree(data_dir, ignore_errors=True)
