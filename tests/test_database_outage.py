"""PostgreSQL goes away and comes back, under the stack's feet: every request that needs it is
`503 {"error": "unavailable"}` with Retry-After (never a 500 or a 502), a WebSocket subscribe
is closed 1011 with a reason, each service logs the outage once (no traceback per request),
and everything works again by itself once the server is back.

The cluster is the test's own (devstack.pgcluster), stopped and started by the test."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from devstack.pgcluster import Cluster, own_cluster
from devstack.testing import free_port
from servicekit.db import ensure_database

from .conftest import (
    ROOT,
    SECRETS_SEEN,
    NativeStack,
    StackConfig,
    User,
    gateway_client,
    log_leaks,
    sign_up,
)

Call = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@pytest.fixture(scope="module")
async def outage_stack() -> AsyncIterator[tuple[NativeStack, Cluster]]:
    with own_cluster() as cluster:
        await cluster.start()
        url = cluster.url("stack")
        await ensure_database(url)
        config = StackConfig(
            gateway_port=free_port(),
            status_port=free_port(),
            auth_port=free_port(),
            api_port=free_port(),
            realtime_ports=[free_port()],
            database_url=url,
            run_dir=ROOT / "var" / f"outage-{uuid.uuid4().hex[:6]}",
            extra_env={"LOG_LEVEL": "INFO"},
        )
        stack = NativeStack(config)
        try:
            await stack.start()
            yield stack, cluster
        finally:
            stack.stop()
        # This module runs beside the other end-to-end tests (conftest.py at the root): it checks
        # its stack's logs itself, for the secrets this test process carried.
        leaks = log_leaks(sorted(config.run_dir.glob("*.log")), SECRETS_SEEN.values)
        assert not leaks, "\n".join(leaks[:20])


def calls_needing_the_database(user: User, board_id: str, task_id: str) -> dict[str, Call]:
    h = user.headers
    return {
        "create board": lambda g: g.post("/api/boards", json={"name": "b"}, headers=h),
        "list boards": lambda g: g.get("/api/boards", headers=h),
        "read board": lambda g: g.get(f"/api/boards/{board_id}", headers=h),
        "rename board": lambda g: g.patch(f"/api/boards/{board_id}", json={"name": "r"}, headers=h),
        "create task": lambda g: g.post(
            f"/api/boards/{board_id}/tasks", json={"title": "t"}, headers=h
        ),
        "list tasks": lambda g: g.get(f"/api/boards/{board_id}/tasks", headers=h),
        "update task": lambda g: g.patch(f"/api/tasks/{task_id}", json={"title": "u"}, headers=h),
        "members": lambda g: g.get(f"/api/boards/{board_id}/members", headers=h),
        "me": lambda g: g.get("/auth/users/me", headers=h),
        "update me": lambda g: g.patch("/auth/users/me", json={"display_name": "d"}, headers=h),
        "login": lambda g: g.post(
            "/auth/token",
            data={"grant_type": "password", "username": user.email, "password": "e2e password 1"},
        ),
        "refresh": lambda g: g.post(
            "/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": user.tokens["refresh_token"]},
        ),
        "ticket": lambda g: g.post("/realtime/tickets", headers=h),
        "sse": lambda g: sse_head(g, board_id, h),
    }


async def sse_head(
    gateway: httpx.AsyncClient, board_id: str, headers: dict[str, str]
) -> httpx.Response:
    """The SSE answer without its stream: a stream that opens (200) is never read (its
    heartbeats would keep a read going forever), and an error's body is read."""
    params = {"channels": f"board:{board_id}"}
    async with gateway.stream("GET", "/realtime/sse", params=params, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
        return response


async def ws_subscribe_close(base_url: str, user: User, board_id: str) -> tuple[int | None, str]:
    """Opens a WebSocket with the Bearer header (no database needed), subscribes; the close
    code and reason the server sends, or None when it only dropped the connection."""
    url = base_url.replace("http://", "ws://") + "/realtime/ws"
    async with connect(url, additional_headers=user.headers, open_timeout=5) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": f"board:{board_id}"}))
        try:
            async with asyncio.timeout(10):
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == "error":  # not a close: no code
                        return None, f"error reply: {message}"
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                return None, "no close frame"
            return closed.rcvd.code, closed.rcvd.reason
    return None, "unreachable"


def outage_lines(run_dir: Path, service: str) -> tuple[list[dict[str, object]], list[str]]:
    """The service's warnings about the outage, and every log line with a traceback."""
    warnings, tracebacks = [], []
    for line in (run_dir / f"{service}.log").read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line:
                tracebacks.append(line)
            continue
        if entry.get("logger") == "servicekit.outage" and entry["level"] == "WARNING":
            warnings.append(entry)
        if "exc" in entry and entry.get("logger") != "realtime_service.hub":
            tracebacks.append(line)
    return warnings, tracebacks


async def test_an_outage_is_503_until_the_database_is_back(
    outage_stack: tuple[NativeStack, Cluster],
) -> None:
    stack, cluster = outage_stack
    base_url = stack.config.gateway_url
    async with gateway_client(base_url) as gateway:
        user = await sign_up(gateway)
        board = await gateway.post("/api/boards", json={"name": "before"}, headers=user.headers)
        board_id = board.json()["id"]
        task = await gateway.post(
            f"/api/boards/{board_id}/tasks", json={"title": "t"}, headers=user.headers
        )
        calls = calls_needing_the_database(user, board_id, task.json()["id"])

        await cluster.stop()
        answers: dict[str, set[int]] = {name: set() for name in calls}
        for _ in range(3):
            for name, call in calls.items():
                response = await call(gateway)
                answers[name].add(response.status_code)
                assert response.status_code == 503, (name, response.status_code, response.text)
                assert response.json()["error"] == "unavailable", (name, response.text)
                assert int(response.headers["retry-after"]) > 0, name
            await asyncio.sleep(0.5)
        code, reason = await ws_subscribe_close(base_url, user, board_id)
        assert code == 1011, (code, reason)
        assert reason

        await cluster.start()
        started = time.monotonic()
        statuses = []
        while True:
            response = await calls["create board"](gateway)
            statuses.append(response.status_code)
            if response.status_code == 201:
                break
            assert response.status_code == 503, response.text
            assert time.monotonic() - started < 30, "not recovered within 30 s"
            await asyncio.sleep(0.05)
        recovery = time.monotonic() - started
        print(f"recovered {recovery:.2f} s after the server was up; answers {statuses}")

        for name, call in calls.items():
            response = await call(gateway)
            ok = response.status_code == 200 if name == "sse" else response.status_code < 400
            assert ok, (name, response.status_code, response.text)
        code, reason = await ws_subscribe_close(base_url, user, str(uuid.uuid4()))
        assert code == 4403, (code, reason)

    for service in ("auth", "api", "realtime-1"):
        warnings, tracebacks = outage_lines(stack.config.run_dir, service)
        assert len(warnings) == 1, (service, warnings)
        assert not tracebacks, (service, tracebacks[:2])
