"""Text PostgreSQL cannot store (NUL, a lone surrogate) is refused before it reaches the
database: 422 naming the field, or the token endpoint's RFC 6749 400; never a 500."""

import json

import httpx
import pytest
from fastapi import FastAPI

from .conftest import PASSWORD, Account, bearer, count_rows, login, unique_email

UNSTORABLE = ["nul\x00here", "lone \ud800 surrogate"]


async def post_json(
    client: httpx.AsyncClient, method: str, url: str, body: object, headers: dict[str, str]
) -> httpx.Response:
    # json.dumps escapes to ASCII: a lone surrogate travels as the JSON escape "\ud800".
    return await client.request(
        method,
        url,
        content=json.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
    )


@pytest.mark.parametrize("bad", UNSTORABLE)
async def test_unstorable_text_in_json_bodies_is_422_naming_the_field(
    app: FastAPI, client: httpx.AsyncClient, account: Account, bad: str
) -> None:
    headers = bearer((await login(client, account))["access_token"])
    users_before = await count_rows(app, "SELECT count(*) FROM auth.users")
    attempts = [
        (
            "POST",
            "/auth/register",
            {"email": unique_email(), "password": PASSWORD, "display_name": bad},
            "display_name",
            {},
        ),
        (
            "POST",
            "/auth/register",
            {"email": unique_email(), "password": bad + PASSWORD},
            "password",
            {},
        ),
        ("PATCH", "/auth/users/me", {"display_name": bad}, "display_name", headers),
        ("POST", "/auth/logout", {"refresh_token": bad}, "refresh_token", {}),
    ]
    for method, url, body, field, extra in attempts:
        response = await post_json(client, method, url, body, extra)
        assert response.status_code == 422, (url, field, response.text)
        errors = response.json()["detail"]
        assert [err["loc"] for err in errors] == [["body", field]], errors
    assert await count_rows(app, "SELECT count(*) FROM auth.users") == users_before
    me = await client.get("/auth/users/me", headers=headers)
    assert "\x00" not in me.json()["display_name"]


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "password", "username": "a\x00@example.com", "password": PASSWORD},
        {"grant_type": "password", "username": "a@example.com", "password": "x\x00y"},
        {"grant_type": "refresh_token", "refresh_token": "abc\x00def"},
        {"grant_type": "pass\x00word"},
    ],
)
async def test_nul_in_a_token_form_field_is_an_rfc6749_invalid_request(
    client: httpx.AsyncClient, form: dict[str, str]
) -> None:
    response = await client.post("/auth/token", data=form)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"
