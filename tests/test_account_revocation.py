"""Deactivation and password reset reach the resource servers through the event log: the
user's live WebSocket closes 4401, the SSE stream ends with `disconnect`, and api-service
answers 401, within 5 s; reactivation restores access."""

import asyncio
import json
import os
import sys
import time
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect

from .conftest import PASSWORD, NativeStack, User, mailed_link, sign_up
from .test_gateway import sse, ticket

WITHIN = 5.0


COMPOSE_PROJECT = os.environ.get("E2E_COMPOSE_PROJECT", "")


async def make_admin(stack: NativeStack | None, gateway: httpx.AsyncClient) -> User:
    """An admin made as docs/accounts.md says: the command against the native stack's database, or
    inside a one-off auth container of the compose project."""
    email = f"admin-{uuid.uuid4().hex[:10]}@example.com"
    create_admin = ["python", "-m", "auth_service.admin", "create-admin", email]
    if stack is not None:
        command = [sys.executable, *create_admin[1:]]
        env = {**os.environ, "DATABASE_URL": stack.config.database_url, "ADMIN_PASSWORD": PASSWORD}
    else:
        compose = ["docker", "compose", "-p", COMPOSE_PROJECT, "run", "--rm", "--no-deps", "-T"]
        command = [*compose, "-e", f"ADMIN_PASSWORD={PASSWORD}", "auth", *create_admin]
        env = dict(os.environ)
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0, (out + err).decode()
    token = await gateway.post(
        "/auth/token", data={"grant_type": "password", "username": email, "password": PASSWORD}
    )
    assert token.status_code == 200, token.text
    me = await gateway.get("/auth/users/me", headers=User("", email, token.json()).headers)
    return User(me.json()["id"], email, token.json())


async def api_status(gateway: httpx.AsyncClient, user: User) -> int:
    return (await gateway.get("/api/boards", headers=user.headers)).status_code


async def wait_for_api_status(gateway: httpx.AsyncClient, user: User, status: int) -> float:
    started = time.monotonic()
    while (await api_status(gateway, user)) != status:
        assert time.monotonic() - started < WITHIN, f"api-service never answered {status}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
def admin_stack(stack: NativeStack | None) -> NativeStack | None:
    """The stack, where this test can make an admin: native, or compose (E2E_COMPOSE_PROJECT)."""
    if stack is None and not COMPOSE_PROJECT:
        pytest.skip("making an admin needs the stack's database or its compose project")
    return stack


@pytest.mark.compose
async def test_deactivation_closes_live_connections_and_api_access_within_5_s(
    admin_stack: NativeStack | None, gateway: httpx.AsyncClient, base_url: str
) -> None:
    admin = await make_admin(admin_stack, gateway)
    user = await sign_up(gateway)
    channel = f"user:{user.id}"
    ws_url = (
        base_url.replace("http://", "ws://") + f"/realtime/ws?ticket={await ticket(gateway, user)}"
    )
    assert await api_status(gateway, user) == 200
    async with (
        sse(base_url, {"channels": channel, "ticket": await ticket(gateway, user)}) as stream,
        connect(ws_url) as ws,
    ):
        await stream.until("ready")
        await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        assert json.loads(await ws.recv())["type"] == "subscribed"

        started = time.monotonic()
        deactivated = await gateway.patch(
            f"/auth/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers
        )
        assert deactivated.status_code == 200, deactivated.text

        disconnect = await stream.until("disconnect", timeout=WITHIN)
        assert disconnect.data["code"] == 4401
        async with asyncio.timeout(WITHIN - (time.monotonic() - started)):
            await ws.wait_closed()
        assert ws.close_code == 4401
        assert time.monotonic() - started < WITHIN
    await wait_for_api_status(gateway, user, 401)
    assert time.monotonic() - started < WITHIN + 1
    tickets = await gateway.post("/realtime/tickets", headers=user.headers)
    assert tickets.status_code == 401

    reactivated = await gateway.patch(
        f"/auth/admin/users/{user.id}", json={"is_active": True}, headers=admin.headers
    )
    assert reactivated.status_code == 200
    fresh = await gateway.post(
        "/auth/token",
        data={"grant_type": "password", "username": user.email, "password": PASSWORD},
    )
    assert fresh.status_code == 200
    await wait_for_api_status(gateway, User(user.id, user.email, fresh.json()), 200)


async def test_other_users_keep_their_access(
    admin_stack: NativeStack | None, gateway: httpx.AsyncClient
) -> None:
    admin = await make_admin(admin_stack, gateway)
    user, bystander = await sign_up(gateway), await sign_up(gateway)
    await gateway.patch(
        f"/auth/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    await wait_for_api_status(gateway, user, 401)
    assert await api_status(gateway, bystander) == 200


async def test_a_password_reset_ends_access_tokens_at_api_service(
    mail_url: str, gateway: httpx.AsyncClient
) -> None:
    user = await sign_up(gateway)
    assert await api_status(gateway, user) == 200
    forgot = await gateway.post("/auth/password/forgot", json={"email": user.email})
    assert forgot.status_code == 202
    link = await mailed_link(mail_url, user.email, "reset-password")
    token = link.split("#reset-password=", 1)[1]
    # A token issued in the same second as the reset is still honoured (see revocation_events).
    await asyncio.sleep(1.0)
    reset = await gateway.post(
        "/auth/password/reset", json={"token": token, "password": "a fresh password 42"}
    )
    assert reset.status_code == 204
    await wait_for_api_status(gateway, user, 401)
    fresh = await gateway.post(
        "/auth/token",
        data={"grant_type": "password", "username": user.email, "password": "a fresh password 42"},
    )
    assert fresh.status_code == 200
    assert await api_status(gateway, User(user.id, user.email, fresh.json())) == 200
