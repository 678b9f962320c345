"""End-to-end tests: through the nginx gateway only. They start the native stack with the
launcher (two realtime replicas, a fresh database), or use a running stack at E2E_BASE_URL."""

import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from servicekit.testing import free_port, fresh_database

ROOT = Path(__file__).parents[1]
# The launcher and the dashboard builder are scripts, not packages.
sys.path.insert(0, str(ROOT / "deploy" / "local"))
sys.path.insert(0, str(ROOT / "deploy" / "grafana"))
from launcher import NativeStack, StackConfig  # noqa: E402

PASSWORD = "e2e password 1"


@asynccontextmanager
async def native_stack(
    name: str, service_env: dict[str, str] | None = None, **settings: Any
) -> AsyncIterator[NativeStack]:
    """The launcher's stack on free ports, two realtime replicas, a fresh database;
    `service_env` adds settings to every service's environment."""
    async with fresh_database(name, []) as url:
        config = StackConfig(
            gateway_port=free_port(),
            status_port=free_port(),
            auth_port=free_port(),
            api_port=free_port(),
            realtime_ports=[free_port(), free_port()],
            database_url=url,
            run_dir=ROOT / "var" / f"{name}-{uuid.uuid4().hex[:6]}",
            extra_env={"LOG_LEVEL": "WARNING", **(service_env or {})},
            **settings,
        )
        native = NativeStack(config)
        try:
            await native.start()
            yield native
        finally:
            native.stop()


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[NativeStack | None]:
    if os.environ.get("E2E_BASE_URL"):
        yield None
        return
    async with native_stack("e2e") as native:
        yield native


@pytest.fixture(scope="session")
def base_url(stack: NativeStack | None) -> str:
    if stack is None:
        return os.environ["E2E_BASE_URL"].rstrip("/")
    return stack.config.gateway_url


@pytest.fixture
async def gateway(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        yield client


class User:
    def __init__(self, user_id: str, email: str, tokens: dict[str, str]) -> None:
        self.id, self.email, self.tokens = user_id, email, tokens

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


async def sign_up(gateway: httpx.AsyncClient) -> User:
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    registered = await gateway.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    token = await gateway.post(
        "/auth/token", data={"grant_type": "password", "username": email, "password": PASSWORD}
    )
    assert token.status_code == 200, token.text
    return User(registered.json()["id"], email, token.json())
