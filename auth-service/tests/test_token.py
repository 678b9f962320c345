import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import text

from auth_service.config import Settings
from auth_service.main import create_app
from devstack.testing import asgi_client

from .conftest import (
    Account,
    bearer,
    count_rows,
    login,
    password_grant,
    refresh_grant,
    register,
    unique_email,
)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def assert_oauth_error(response: httpx.Response, error: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["error_description"], str)
    assert set(body) == {"error", "error_description"}
    assert response.headers["cache-control"] == "no-store"


async def test_password_grant_issues_a_token_pair(
    client: httpx.AsyncClient, account: Account
) -> None:
    logins_before = metric("auth_logins_total", outcome="success")
    response = await password_grant(client, account.email.upper(), account.password)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert len(body["refresh_token"]) >= 43  # 256 bits, base64url
    me = await client.get("/auth/users/me", headers=bearer(body["access_token"]))
    assert me.json()["id"] == account.id
    assert metric("auth_logins_total", outcome="success") == logins_before + 1


async def test_unknown_email_and_wrong_password_answer_alike(
    client: httpx.AsyncClient, account: Account
) -> None:
    failures_before = metric("auth_logins_total", outcome="invalid_credentials")
    wrong_password = await password_grant(client, account.email, "wrong password!")
    unknown_email = await password_grant(client, unique_email(), "wrong password!")

    assert_oauth_error(wrong_password, "invalid_grant")
    assert_oauth_error(unknown_email, "invalid_grant")
    assert wrong_password.json() == unknown_email.json()
    assert metric("auth_logins_total", outcome="invalid_credentials") == failures_before + 2


@pytest.fixture
async def production_cost_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """auth-service hashing at argon2's production cost (the settings' defaults): at the test
    run's cost a verification takes a millisecond, lost in the noise of a request."""
    production = settings.model_copy(
        update={
            name: Settings.model_fields[name].default
            for name in ("password_hash_memory_kib", "password_hash_iterations")
        }
    )
    app = create_app(production)
    async with app.router.lifespan_context(app), asgi_client(app, "http://auth") as client:
        yield client


async def test_unknown_email_costs_a_password_verification(
    production_cost_client: httpx.AsyncClient,
) -> None:
    """Without the dummy verification an unknown email answers ~50x faster than a wrong
    password, which tells an attacker which emails have accounts."""
    client = production_cost_client
    account = await register(client)

    async def median_seconds(email: str) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            await password_grant(client, email, "wrong password!")
            samples.append(time.perf_counter() - started)
        return sorted(samples)[2]

    await password_grant(client, unique_email(), "warm-up")
    known = await median_seconds(account.email)
    unknown = await median_seconds(unique_email())
    assert 0.5 < unknown / known < 2.0, (known, unknown)


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({}, "invalid_request"),
        ({"grant_type": ""}, "invalid_request"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "password"}, "invalid_request"),
        ({"grant_type": "password", "username": "a@example.com"}, "invalid_request"),
        ({"grant_type": "password", "password": "whatever1"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": ""}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "made-up"}, "invalid_grant"),
        ({"grant_type": "password", "username": "a" * 5000, "password": "x"}, "invalid_grant"),
        (
            {"grant_type": "password", "username": "a@example.com", "password": "x" * 100_000},
            "invalid_grant",
        ),
    ],
)
async def test_token_endpoint_failures_are_rfc6749(
    client: httpx.AsyncClient, form: dict[str, str], error: str
) -> None:
    assert_oauth_error(await client.post("/auth/token", data=form), error)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"grant_type": "password"}', "application/json"),
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
        (b"", "multipart/form-data"),
    ],
)
async def test_token_endpoint_malformed_bodies_are_rfc6749(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(
        "/auth/token", content=content, headers={"content-type": content_type}
    )
    assert_oauth_error(response, "invalid_request")


async def test_refresh_rotates_the_token(client: httpx.AsyncClient, account: Account) -> None:
    first = await login(client, account)
    refreshed = await refresh_grant(client, first["refresh_token"])

    assert refreshed.status_code == 200
    assert refreshed.headers["cache-control"] == "no-store"
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    me = await client.get("/auth/users/me", headers=bearer(second["access_token"]))
    assert me.status_code == 200
    assert (await refresh_grant(client, second["refresh_token"])).status_code == 200


async def test_reuse_of_a_spent_token_revokes_the_whole_family(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    first = await login(client, account)
    second = (await refresh_grant(client, first["refresh_token"])).json()
    reuse_before = metric("auth_refresh_reuse_detected_total")

    replay = await refresh_grant(client, first["refresh_token"])

    assert_oauth_error(replay, "invalid_grant")
    assert metric("auth_refresh_reuse_detected_total") == reuse_before + 1
    # The newest token of the family, never used, is dead too.
    assert_oauth_error(await refresh_grant(client, second["refresh_token"]), "invalid_grant")
    assert (
        await count_rows(
            app,
            "SELECT count(*) FROM auth.sessions WHERE user_id = CAST(:u AS uuid)"
            " AND revoked_reason = 'reuse'",
            u=account.id,
        )
        == 1
    )
    # Another session of the same user is not affected.
    other = await login(client, account)
    assert (await refresh_grant(client, other["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_with_one_token_let_exactly_one_through(
    client: httpx.AsyncClient, account: Account
) -> None:
    tokens = await login(client, account)
    responses = await asyncio.gather(
        *(refresh_grant(client, tokens["refresh_token"]) for _ in range(5))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 400, 400, 400, 400]
    for response in responses:
        if response.status_code == 400:
            assert response.json()["error"] == "invalid_grant"


async def test_logout_ends_the_session(client: httpx.AsyncClient, account: Account) -> None:
    tokens = await login(client, account)
    response = await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 204
    assert response.content == b""
    assert_oauth_error(await refresh_grant(client, tokens["refresh_token"]), "invalid_grant")


async def test_logout_with_an_older_token_of_the_family_ends_it_too(
    client: httpx.AsyncClient, account: Account
) -> None:
    first = await login(client, account)
    second = (await refresh_grant(client, first["refresh_token"])).json()
    await client.post("/auth/logout", json={"refresh_token": first["refresh_token"]})
    assert_oauth_error(await refresh_grant(client, second["refresh_token"]), "invalid_grant")


async def test_logout_of_an_unknown_token_reveals_nothing(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/logout", json={"refresh_token": "never-issued"})
    assert response.status_code == 204


@pytest.mark.parametrize(
    "body",
    [{}, {"refresh_token": 5}, {"refresh_token": "x" * 513}, {"refresh_token": "a", "all": True}],
)
async def test_logout_rejects_malformed_bodies(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/auth/logout", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_expired_refresh_token_is_refused(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    tokens = await login(client, account)
    async with app.state.db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE auth.refresh_tokens SET expires_at = now() - interval '1 second'"
                " WHERE session_id IN (SELECT id FROM auth.sessions"
                " WHERE user_id = CAST(:u AS uuid))"
            ),
            {"u": account.id},
        )
    assert_oauth_error(await refresh_grant(client, tokens["refresh_token"]), "invalid_grant")
