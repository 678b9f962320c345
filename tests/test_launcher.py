"""The native launcher's own behaviour: background start/stop and its messages."""

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from launcher import LauncherError, NativeStack, StackConfig, check_postgres

from servicekit.testing import free_port, fresh_database

from .conftest import native_only

LAUNCHER = Path(__file__).parents[1] / "deploy" / "local" / "launcher.py"


async def launcher(
    args: list[str], env: dict[str, str], script: Path = LAUNCHER
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@native_only("it starts and stops the launcher's own stack")
async def test_stack_up_returns_once_the_gateway_answers_and_stack_down_stops_it(
    tmp_path: Path,
) -> None:
    async with fresh_database("launcher", []) as url:
        ports = {
            name: str(free_port())
            for name in (
                "GATEWAY",
                "STATUS",
                "AUTH",
                "API",
                "PROMETHEUS",
                "NGINX_EXPORTER",
                "POSTGRES_EXPORTER",
                "MAIL_VIEWER",
            )
        }
        env = {
            **os.environ,
            **{f"{name}_PORT": port for name, port in ports.items()},
            "REALTIME_PORTS": f"{free_port()},{free_port()}",
            "DATABASE_URL": url,
            "STACK_RUN_DIR": str(tmp_path),
            "LOG_LEVEL": "WARNING",
            "STACK_MONITORING": "1",
        }
        up = await launcher(["up"], env)
        try:
            assert up.returncode == 0, up.stderr
            assert f"http://127.0.0.1:{ports['GATEWAY']}" in up.stdout
            mail = f"http://127.0.0.1:{ports['MAIL_VIEWER']}"
            assert f"mail      {mail}" in up.stdout
            gateway = f"http://127.0.0.1:{ports['GATEWAY']}"
            prometheus = f"http://127.0.0.1:{ports['PROMETHEUS']}"
            expected_jobs = {"auth", "api", "realtime", "nginx", "postgres", "prometheus"}
            async with httpx.AsyncClient() as client:
                response = await client.get(f"{gateway}/realtime/openapi.json")
                mailbox = await client.get(f"{mail}/messages.json")
                for _ in range(50):  # discovery runs a moment after Prometheus is ready
                    targets = (await client.get(f"{prometheus}/api/v1/targets")).json()
                    active = targets["data"]["activeTargets"]
                    jobs = {target["labels"]["job"] for target in active}
                    if jobs == expected_jobs:
                        break
                    await asyncio.sleep(0.1)
            assert response.status_code == 200
            assert mailbox.json() == []
            assert jobs == expected_jobs
            assert len([t for t in active if t["labels"]["job"] == "realtime"]) == 2
        finally:
            down = await launcher(["down"], env)
        assert down.returncode == 0, down.stderr
        assert not (tmp_path / "stack.pid").exists()
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient() as client:
                await client.get(f"{gateway}/auth/.well-known/jwks.json")


async def test_an_unreachable_postgres_is_reported_with_what_to_do() -> None:
    with pytest.raises(LauncherError, match="PostgreSQL is not reachable") as error:
        await check_postgres(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/stack")
    assert "DATABASE_URL" in str(error.value)


async def test_a_missing_nginx_is_reported_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("launcher.shutil.which", lambda *_, **__: None)
    with pytest.raises(LauncherError, match="apt-get install"):
        await NativeStack(StackConfig(run_dir=tmp_path)).start()


@native_only("it starts the launcher's own stack from a copy of the checkout")
async def test_the_stack_serves_the_demo_page_from_a_checkout_only_its_owner_can_read(
    tmp_path: Path,
) -> None:
    # What the launcher reads from its checkout, copied into a directory of mode 700 (as a
    # clone under /root is).
    checkout = tmp_path / "private"
    checkout.mkdir(mode=0o700)
    root = LAUNCHER.parents[2]
    for part in ("deploy/local", "deploy/nginx", "deploy/web", "deploy/prometheus"):
        shutil.copytree(root / part, checkout / part)
    for name in ("auth", "api", "realtime"):
        migrations = f"{name}-service/migrations"
        shutil.copytree(root / migrations, checkout / migrations)
    async with fresh_database("private", []) as url:
        gateway_port = free_port()
        env = {
            **os.environ,
            "GATEWAY_PORT": str(gateway_port),
            "STATUS_PORT": str(free_port()),
            "AUTH_PORT": str(free_port()),
            "API_PORT": str(free_port()),
            "REALTIME_PORTS": str(free_port()),
            "MAIL_VIEWER_PORT": str(free_port()),
            "DATABASE_URL": url,
            "LOG_LEVEL": "WARNING",
            "STACK_MONITORING": "0",
        }
        private_launcher = checkout / "deploy" / "local" / "launcher.py"
        up = await launcher(["up"], env, private_launcher)
        try:
            assert up.returncode == 0, up.stderr
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway_port}") as client:
                page = await client.get("/")
                script = await client.get("/web/app.js")
        finally:
            down = await launcher(["down"], env, private_launcher)
            assert down.returncode == 0, down.stderr
    assert page.status_code == 200, page.text
    assert "<html" in page.text.lower()
    assert script.status_code == 200
