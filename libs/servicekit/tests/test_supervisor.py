"""servicekit.supervisor: a failing loop is logged and restarted with backoff, a stalled or
stopped essential loop fails readiness, and the loop metrics say so."""

import asyncio
import itertools
import logging
import time
import uuid

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from devstack.testing import asgi_client
from servicekit.app import create_service_app
from servicekit.settings import ServiceSettings
from servicekit.supervisor import Heartbeat, LoopsUnhealthy, Supervisor


def unique(prefix: str) -> str:
    """Loop names are metric labels, shared by every test in the process."""
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def sample(name: str, loop: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"loop": loop})


async def eventually(condition: object, timeout: float = 3.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_loop_that_raises_is_logged_with_its_traceback_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique("flaky")
    runs: list[float] = []

    async def flaky(heartbeat: Heartbeat) -> None:
        runs.append(time.monotonic())
        if len(runs) <= 3:
            raise KeyError("an error nobody expected")
        while True:
            heartbeat.beat()
            await asyncio.sleep(0.01)

    loops = Supervisor(backoff_initial=0.02, backoff_max=1.0)
    with caplog.at_level(logging.INFO, logger="servicekit.supervisor"):
        loops.spawn(name, flaky, stale_after=5.0)
        try:
            await eventually(lambda: loops.running(name) and len(runs) == 4)
            await asyncio.sleep(0.05)
            assert loops.restarts(name) == 3
            assert sample("servicekit_loop_restarts_total", name) == 3
            assert sample("servicekit_loop_up", name) == 1
            last = sample("servicekit_loop_last_success_timestamp_seconds", name)
            assert last is not None
            assert abs(last - time.time()) < 1
            await loops.check()
        finally:
            await loops.stop()
    crashes = [r for r in caplog.records if r.getMessage() == "background loop crashed"]
    assert len(crashes) == 3
    assert all(r.exc_info and r.exc_info[0] is KeyError for r in crashes)
    assert all(getattr(r, "loop", None) == name for r in crashes)
    # Backoff doubles between failures: 0.02, 0.04, 0.08 s.
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= 0.02
    assert gaps[1] >= 0.04
    assert gaps[2] >= 0.08
    assert sample("servicekit_loop_up", name) == 0


async def test_a_transient_error_is_a_warning_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique("transient")
    failed = asyncio.Event()

    async def drops(heartbeat: Heartbeat) -> None:
        if not failed.is_set():
            failed.set()
            raise ConnectionResetError("the server went away")
        heartbeat.beat()
        await asyncio.Event().wait()

    loops = Supervisor(backoff_initial=0.01)
    with caplog.at_level(logging.INFO, logger="servicekit.supervisor"):
        loops.spawn(name, drops, transient=(OSError,))
        try:
            await eventually(lambda: loops.restarts(name) == 1 and loops.running(name))
        finally:
            await loops.stop()
    (warning,) = [r for r in caplog.records if r.getMessage() == "background loop failed"]
    assert warning.levelno == logging.WARNING
    assert not warning.exc_info
    assert "ConnectionResetError" in warning.__dict__["err"]


async def test_a_loop_that_returns_is_restarted_too() -> None:
    name = unique("returns")
    runs = 0

    async def returns(heartbeat: Heartbeat) -> None:
        nonlocal runs
        runs += 1
        if runs > 2:
            await asyncio.Event().wait()

    loops = Supervisor(backoff_initial=0.01)
    loops.spawn(name, returns)
    try:
        await eventually(lambda: runs == 3)
        assert loops.restarts(name) == 2
    finally:
        await loops.stop()


async def test_a_stalled_essential_loop_fails_readiness_and_recovers() -> None:
    name = unique("stalls")
    stall = asyncio.Event()
    resume = asyncio.Event()

    async def stalls(heartbeat: Heartbeat) -> None:
        while True:
            if stall.is_set():
                await resume.wait()  # hung: no error, no progress
                stall.clear()
            heartbeat.beat()
            await asyncio.sleep(0.01)

    loops = Supervisor()
    loops.spawn(name, stalls, stale_after=0.2)
    loops.spawn(unique("idle_optional"), lambda _: asyncio.Event().wait(), essential=False)
    try:
        await asyncio.sleep(0.3)
        await loops.check()  # beating: fresh
        stall.set()
        await asyncio.sleep(0.4)
        assert loops.unhealthy() == [name]
        with pytest.raises(LoopsUnhealthy, match=name):
            await loops.check()
        assert loops.restarts(name) == 0  # stalled, not failed
        resume.set()
        await asyncio.sleep(0.05)
        await loops.check()
    finally:
        await loops.stop()


async def test_a_loop_failing_at_every_start_goes_stale_and_fails_readiness() -> None:
    name = unique("always_fails")

    async def fails(heartbeat: Heartbeat) -> None:
        raise ConnectionRefusedError("no database")

    loops = Supervisor(backoff_initial=0.01, backoff_max=0.05)
    loops.spawn(name, fails, stale_after=0.3, transient=(OSError,))
    try:
        await loops.check()  # a fresh loop has its bound to succeed
        await asyncio.sleep(0.45)
        assert loops.restarts(name) >= 5
        with pytest.raises(LoopsUnhealthy):
            await loops.check()
    finally:
        await loops.stop()


async def test_readiness_of_a_service_app_fails_while_its_loop_is_stalled() -> None:
    """As the services wire it: a `background_loops` readiness check on the supervisor."""
    name = unique("service_loop")
    beating = True

    async def loop(heartbeat: Heartbeat) -> None:
        while True:
            if beating:
                heartbeat.beat()
            await asyncio.sleep(0.01)

    app: FastAPI = create_service_app(
        title="kit", prefix="/kit", settings=ServiceSettings(service_name="kit"), routers=[]
    )
    loops = Supervisor()
    app.state.health.add_check("background_loops", loops.check)
    loops.spawn(name, loop, stale_after=0.2)
    try:
        async with asgi_client(app) as client:
            assert (await client.get("/readyz")).status_code == 200
            beating = False
            await asyncio.sleep(0.35)
            response: httpx.Response = await client.get("/readyz")
            assert response.status_code == 503
            assert "background_loops" in response.text
            metrics = (await client.get("/metrics")).text
            assert f'servicekit_loop_stale_after_seconds{{loop="{name}"}} 0.2' in metrics
    finally:
        await loops.stop()


async def test_stop_does_not_wait_forever_on_a_loop_whose_cleanup_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique("hangs_on_stop")
    never = asyncio.Event()

    async def hangs(heartbeat: Heartbeat) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(never.wait())  # a cleanup stuck on a dead connection

    loops = Supervisor()
    loops.spawn(name, hangs)
    await asyncio.sleep(0.01)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="servicekit.supervisor"):
        await loops.stop(grace=0.2)
    assert time.monotonic() - started < 1.0
    assert any(r.getMessage() == "background loop did not stop" for r in caplog.records)
    never.set()
