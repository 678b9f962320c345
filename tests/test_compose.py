"""What only the compose stack can show: run by `make compose-test`, which names its project in
E2E_COMPOSE_PROJECT (and its gateway in E2E_BASE_URL)."""

import asyncio
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from devstack.testing import SseStream

from .conftest import ROOT, sign_up

PROJECT = os.environ.get("E2E_COMPOSE_PROJECT", "")
PROMETHEUS_URL = os.environ.get("E2E_PROMETHEUS_URL", "")
pytestmark = [
    pytest.mark.compose,
    pytest.mark.skipif(
        not PROJECT, reason="needs the compose stack and a Docker engine: make compose-test"
    ),
]


def compose(*args: str, project: str = PROJECT, timeout: float = 120) -> str:
    result = subprocess.run(
        ["docker", "compose", "-p", project, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def container_of(service: str) -> str:
    return compose("ps", "-a", "-q", service).strip()


def inspect(container: str, template: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", template, container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def redirect_location(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_forwarded_headers_are_trusted_from_the_gateways_network_only() -> None:
    # A slash too many makes api-service redirect, to an absolute URL built with the scheme it
    # believes: X-Forwarded-Proto's when it trusts the sender.
    path = "/api/boards/"
    from_gateway = redirect_location(
        [
            "docker", "exec", container_of("nginx"), "curl", "-s", "-o", "/dev/null",
            "-w", "%{redirect_url}", "-H", "X-Forwarded-Proto: https",
            f"http://edge-api:8002{path}",
        ]
    )  # fmt: skip
    fetch = (
        "import urllib.request as u\n"
        "class Keep(u.HTTPRedirectHandler):\n"
        "    def redirect_request(self, *args): return None\n"
        "try:\n"
        f"    u.build_opener(Keep).open(u.Request('http://api:8002{path}',"
        " headers={'X-Forwarded-Proto': 'https'}))\n"
        "except u.HTTPError as e:\n"
        "    print(e.headers['location'])\n"
    )
    from_backend = redirect_location(
        [
            "docker", "run", "--rm", "--network", f"{PROJECT}_backend",
            "--entrypoint", "python", f"{PROJECT}-api", "-c", fetch,
        ]
    )  # fmt: skip
    assert from_gateway.startswith("https://"), from_gateway
    assert from_backend.startswith("http://"), from_backend


def test_published_ports_other_than_the_gateways_are_on_this_machine_only() -> None:
    assert compose("port", "prometheus", "9090").strip().startswith("127.0.0.1:")
    assert compose("port", "mailcatcher", "8025").strip().startswith("127.0.0.1:")


async def test_nginx_ends_open_streams_and_exits_before_docker_kills_it(base_url: str) -> None:
    nginx = container_of("nginx")
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as gateway:
        alice = await sign_up(gateway)
        board = (
            await gateway.post("/api/boards", json={"name": "Stop"}, headers=alice.headers)
        ).json()
    params = {"channels": f"board:{board['id']}"}
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as client,
        client.stream(
            "GET", f"{base_url}/realtime/sse", params=params, headers=alice.headers
        ) as response,
    ):
        stream = SseStream(response)
        await stream.until("ready")

        async def read_to_the_end() -> None:
            while True:
                await stream.next(timeout=30)

        started = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(compose, "stop", "nginx"))
        with pytest.raises((EOFError, httpx.HTTPError)):
            await read_to_the_end()
        await stopping
        took = time.monotonic() - started
    try:
        assert inspect(nginx, "{{.State.ExitCode}}") == "0", "nginx was killed"
        assert took < 15, took
    finally:
        compose("start", "nginx")
        for _ in range(120):
            if inspect(nginx, "{{.State.Health.Status}}") == "healthy":
                break
            await asyncio.sleep(0.5)


def test_postgres_is_healthy_only_once_it_takes_tcp_connections(tmp_path: Path) -> None:
    # A first start whose initialisation takes a while: PostgreSQL answers on its Unix socket
    # meanwhile, and the services, which connect over TCP, must not be started yet.
    slow = tmp_path / "slow-init.sh"
    slow.write_text("sleep 8\n")
    slow.chmod(0o755)
    override = tmp_path / "slow-init.yml"
    override.write_text(
        "services:\n  postgres:\n    volumes:\n"
        f"      - {slow}:/docker-entrypoint-initdb.d/slow-init.sh:ro\n"
    )
    project = f"{PROJECT}-pg"
    files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(override)]
    try:
        compose(*files, "up", "-d", "--wait", "postgres", project=project)
        query = compose(
            *files,
            "exec", "-T", "-e", "PGPASSWORD=" + os.environ["POSTGRES_PASSWORD"], "postgres",
            "psql", "-h", "127.0.0.1", "-U", "stack", "-d", "stack", "-tAc", "select 1",
            project=project,
        )  # fmt: skip
        assert query.strip() == "1"
    finally:
        compose(*files, "down", "-v", project=project)


def test_the_build_context_leaves_out_the_virtualenv_and_everything_unbuilt() -> None:
    # What the services' builds are sent, measured as Docker sees it: the whole context copied
    # into an empty image.
    assert (ROOT / ".venv").is_dir(), "the check means something only with a .venv present"
    tag = f"{PROJECT}-build-context"
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-f", "-", "."],
        input="FROM scratch\nCOPY . /context\n",
        cwd=ROOT,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    try:
        size = int(inspect(tag, "{{.Size}}"))
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
    assert size < 5 * 1024 * 1024, f"the build context is {size / 1e6:.0f} MB"


# Lists what a service image has installed, and where the development package would be.
INSTALLED = (
    "import importlib.metadata, importlib.util\n"
    "print(*sorted(d.metadata['Name'] for d in importlib.metadata.distributions()))\n"
    "print(importlib.util.find_spec('devstack'))\n"
)


@pytest.mark.parametrize("service", ["auth", "api", "realtime"])
def test_no_service_image_contains_the_development_package(service: str) -> None:
    """devstack (the launcher, the test fixtures) is a dev-only dependency: the image built by
    compose holds the service and its runtime libraries, and nothing of devstack, neither
    installed nor as files."""
    image = f"{PROJECT}-{service}"
    installed = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", image, "-c", INSTALLED],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    packages = set(installed[0].split())
    assert {f"{service}-service", "servicekit", "eventlog"} <= packages, packages
    assert "devstack" not in packages
    assert installed[1] == "None", installed[1]
    find = ["find", "/app", "/usr", "-name", "*devstack*"]
    files = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", find[0], image, *find[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert files == "", files


async def test_prometheus_scrapes_every_job_of_its_configuration() -> None:
    """Every job of deploy/prometheus/prometheus.yml has targets, found through compose's DNS,
    and every target answers its scrape: the services, both exporters, Prometheus itself."""
    if not PROMETHEUS_URL:
        pytest.skip("E2E_PROMETHEUS_URL names no Prometheus")
    expected = {"auth", "api", "realtime", "nginx", "postgres", "prometheus"}
    health: dict[str, set[str]] = {}
    async with httpx.AsyncClient(timeout=5) as client, asyncio.timeout(60):
        while True:
            targets = (await client.get(f"{PROMETHEUS_URL}/api/v1/targets")).json()
            health = {}
            for target in targets["data"]["activeTargets"]:
                health.setdefault(target["labels"]["job"], set()).add(target["health"])
            if set(health) == expected and all(h == {"up"} for h in health.values()):
                return
            await asyncio.sleep(1)
