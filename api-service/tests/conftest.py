"""api-service runs in-process; tokens come from a real auth-service process whose JWKS the
api-service fetches over HTTP, as in production."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api_service.config import Settings
from api_service.main import create_app
from devstack.testing import (
    asgi_client,
    channel_events,
    events_sequenced,
    fresh_database,
    uvicorn_process,
)
from eventlog import MIGRATIONS as LOG_MIGRATIONS

ROOT = Path(__file__).parents[2]
MIGRATIONS = [
    ROOT / "auth-service" / "migrations",
    ROOT / "api-service" / "migrations",
    LOG_MIGRATIONS,
]
PASSWORD = "api test password"


@dataclass(frozen=True)
class User:
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with fresh_database("api", MIGRATIONS) as url:
        yield url


@pytest.fixture(scope="session")
async def auth_url(database_url: str) -> AsyncIterator[str]:
    env = {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    async with uvicorn_process("auth_service.main:app", env) as url:
        yield url


@pytest.fixture(scope="session")
async def app(database_url: str, auth_url: str) -> AsyncIterator[FastAPI]:
    settings = Settings(
        database_url=database_url, jwks_url=f"{auth_url}/auth/.well-known/jwks.json"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app, "http://api") as client:
        yield client


NewUser = Callable[[], Awaitable[User]]


@pytest.fixture(scope="session")
def new_user(auth_url: str) -> NewUser:
    async def create() -> User:
        email = f"api-{uuid.uuid4().hex[:12]}@example.com"
        async with httpx.AsyncClient(base_url=auth_url) as auth:
            registered = await auth.post(
                "/auth/register", json={"email": email, "password": PASSWORD}
            )
            token = await auth.post(
                "/auth/token",
                data={"grant_type": "password", "username": email, "password": PASSWORD},
            )
        return User(registered.json()["id"], token.json()["access_token"])

    return create


@pytest.fixture(scope="session")
async def user_pool(new_user: NewUser) -> list[User]:
    """Users shared by tests that only need distinct identities (registration is slow)."""
    return [await new_user() for _ in range(6)]


async def create_board(client: httpx.AsyncClient, owner: User, name: str = "Board") -> str:
    response = await client.post("/api/boards", json={"name": name}, headers=owner.headers)
    assert response.status_code == 201, response.text
    board_id: str = response.json()["id"]
    return board_id


async def add_member(
    client: httpx.AsyncClient, board_id: str, owner: User, member: User, role: str
) -> None:
    response = await client.put(
        f"/api/boards/{board_id}/members/{member.id}", json={"role": role}, headers=owner.headers
    )
    assert response.status_code == 200, response.text


async def create_task(
    client: httpx.AsyncClient, board_id: str, author: User, **fields: object
) -> dict[str, object]:
    body = {"title": "A task", **fields}
    response = await client.post(f"/api/boards/{board_id}/tasks", json=body, headers=author.headers)
    assert response.status_code == 201, response.text
    task: dict[str, object] = response.json()
    return task


async def settled(app: FastAPI) -> None:
    """Wait until the sequencer has moved every committed event into the log."""
    await events_sequenced(database_url_of(app))


async def events_on(app: FastAPI, channel: str) -> list[tuple[str, dict[str, Any]]]:
    """The (type, data) of every event on `channel` once the log has settled, oldest first."""
    return await channel_events(database_url_of(app), channel)


def database_url_of(app: FastAPI) -> str:
    url: str = app.state.db.engine.url.render_as_string(hide_password=False)
    return url


async def one_of_two_edits_wins(
    client: httpx.AsyncClient, url: str, bodies: tuple[dict[str, Any], dict[str, Any]], user: User
) -> dict[str, Any]:
    """Two PATCHes of `url` sent at once, both with `If-Match: "1"`: one must win (200) and
    the other get 412 with nothing overwritten, whichever order they interleave in. Returns
    the row as read afterwards, checked to be the winner's at version 2."""
    headers = {**user.headers, "If-Match": '"1"'}
    results = await asyncio.gather(
        *(client.patch(url, json=body, headers=headers) for body in bodies)
    )
    assert sorted(response.status_code for response in results) == [200, 412]
    loser = next(response for response in results if response.status_code == 412)
    assert loser.json()["error"] == "precondition_failed"
    final: dict[str, Any] = (await client.get(url, headers=user.headers)).json()
    assert final == next(response for response in results if response.status_code == 200).json()
    assert final["version"] == 2
    return final
