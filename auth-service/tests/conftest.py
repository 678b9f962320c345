import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from auth_service.config import Settings
from auth_service.main import create_app
from devstack.testing import asgi_client, fresh_database
from eventlog import MIGRATIONS as LOG_MIGRATIONS

MIGRATIONS = Path(__file__).parents[1] / "migrations"
# Deactivation and reset append events to api-service's inbox (the log's entry), so the test
# database has api's schema too, as the stack's does.
API_MIGRATIONS = Path(__file__).parents[2] / "api-service" / "migrations"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with fresh_database("auth", [MIGRATIONS, API_MIGRATIONS, LOG_MIGRATIONS]) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app, "http://auth") as client:
        yield client


@dataclass
class Account:
    id: str
    email: str
    password: str


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


async def register(client: httpx.AsyncClient, password: str = PASSWORD) -> Account:
    email = unique_email()
    response = await client.post("/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    return Account(response.json()["id"], email, password)


async def password_grant(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(
        "/auth/token", data={"grant_type": "password", "username": email, "password": password}
    )


async def refresh_grant(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


async def login(client: httpx.AsyncClient, account: Account) -> dict[str, str]:
    response = await password_grant(client, account.email, account.password)
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


async def count_rows(app: FastAPI, sql: str, **params: object) -> int:
    async with app.state.db.engine.connect() as conn:
        return int(await conn.scalar(text(sql), params) or 0)


@pytest.fixture
async def account(client: httpx.AsyncClient) -> Account:
    return await register(client)
