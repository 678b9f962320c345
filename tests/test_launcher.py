"""The native launcher's own behaviour: background start/stop and its messages."""

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from devstack.launcher import LauncherError, NativeStack, StackConfig, check_postgres
from devstack.testing import free_port, fresh_database

from .conftest import ROOT, native_only


async def launcher(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "devstack.launcher", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


async def test_an_unreachable_postgres_is_reported_with_what_to_do() -> None:
    with pytest.raises(LauncherError, match="PostgreSQL is not reachable") as error:
        await check_postgres(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/stack")
    assert "DATABASE_URL" in str(error.value)


async def test_a_missing_nginx_is_reported_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("devstack.launcher.shutil.which", lambda *_, **__: None)
    with pytest.raises(LauncherError, match="apt-get install"):
        await NativeStack(StackConfig(run_dir=tmp_path)).start()


@native_only("it starts and stops the launcher's own stack, from a copy of the checkout")
async def test_stack_up_from_a_checkout_only_its_owner_can_read_then_stack_down(
    tmp_path: Path,
) -> None:
    """`up` returns once the gateway answers, with every service, the demo page, the mail
    catcher and monitoring (every job scraped, both realtime replicas), from a checkout of
    mode 700 as a clone under /root is; `down` stops all of it. One stack for both: each
    start and stop of a whole stack costs the suite many seconds."""
    # The launcher and what it reads from its checkout, copied into a directory of mode 700;
    # the copy's devstack is the one imported (PYTHONPATH, below), so it serves the copy.
    checkout = tmp_path / "private"
    checkout.mkdir(mode=0o700)
    for part in (
        "libs/devstack/src",
        "deploy/local",
        "deploy/nginx",
        "deploy/web",
        "deploy/prometheus",
    ):
        shutil.copytree(ROOT / part, checkout / part)
    (checkout / "clients" / "js").mkdir(parents=True)
    shutil.copy(ROOT / "clients" / "js" / "index.js", checkout / "clients" / "js")
    for name in ("auth", "api", "realtime"):
        migrations = f"{name}-service/migrations"
        shutil.copytree(ROOT / migrations, checkout / migrations)
    run_dir = tmp_path / "run"
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
            "STACK_RUN_DIR": str(run_dir),
            "LOG_LEVEL": "WARNING",
            "STACK_MONITORING": "1",
            "PYTHONPATH": str(checkout / "libs" / "devstack" / "src"),
        }
        up = await launcher(["up"], env)
        try:
            assert up.returncode == 0, up.stderr
            gateway = f"http://127.0.0.1:{ports['GATEWAY']}"
            assert gateway in up.stdout
            mail = f"http://127.0.0.1:{ports['MAIL_VIEWER']}"
            assert f"mail      {mail}" in up.stdout
            prometheus = f"http://127.0.0.1:{ports['PROMETHEUS']}"
            expected_jobs = {"auth", "api", "realtime", "nginx", "postgres", "prometheus"}
            async with httpx.AsyncClient() as client:
                response = await client.get(f"{gateway}/realtime/openapi.json")
                page = await client.get(f"{gateway}/")
                script = await client.get(f"{gateway}/web/app.js")
                served_client = await client.get(f"{gateway}/web/stack-client.js")
                mailbox = await client.get(f"{mail}/messages.json")
                for _ in range(50):  # discovery runs a moment after Prometheus is ready
                    targets = (await client.get(f"{prometheus}/api/v1/targets")).json()
                    active = targets["data"]["activeTargets"]
                    jobs = {target["labels"]["job"] for target in active}
                    if jobs == expected_jobs:
                        break
                    await asyncio.sleep(0.1)
            assert response.status_code == 200
            assert page.status_code == 200, page.text
            assert "<html" in page.text.lower()
            assert script.status_code == 200
            assert served_client.content == (ROOT / "clients" / "js" / "index.js").read_bytes()
            assert os.readlink(run_dir / "web" / "stack-client.js").startswith(str(checkout))
            assert mailbox.json() == []
            assert jobs == expected_jobs
            assert len([t for t in active if t["labels"]["job"] == "realtime"]) == 2
        finally:
            down = await launcher(["down"], env)
        assert down.returncode == 0, down.stderr
        assert not (run_dir / "stack.pid").exists()
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient() as client:
                await client.get(f"{gateway}/auth/.well-known/jwks.json")
