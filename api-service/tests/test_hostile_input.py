"""Text PostgreSQL cannot store, and cursors whose fields are well-formed but out of range:
clear 4xx answers naming the field, never a 500, nothing written."""

import base64
import json

import httpx
import pytest
from fastapi import FastAPI

from .conftest import User, create_board, create_task
from .test_pagination_and_input import counts

UNSTORABLE = ["nul\x00here", "\x00", "lone \ud800 surrogate"]


@pytest.mark.parametrize("bad", UNSTORABLE)
async def test_unstorable_text_in_any_body_field_is_422_naming_it(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User], bad: str
) -> None:
    owner, outsider = user_pool[0], user_pool[1]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    before = await counts(app)
    attempts = [
        ("POST", "/api/boards", {"name": bad}, "name", owner),
        ("PATCH", f"/api/boards/{board_id}", {"name": bad}, "name", owner),
        ("PATCH", f"/api/boards/{board_id}", {"name": bad}, "name", outsider),
        ("POST", f"/api/boards/{board_id}/tasks", {"title": bad}, "title", owner),
        ("POST", f"/api/boards/{board_id}/tasks", {"title": bad}, "title", outsider),
        (
            "POST",
            f"/api/boards/{board_id}/tasks",
            {"title": "t", "description": bad},
            "description",
            owner,
        ),
        ("PATCH", f"/api/tasks/{task['id']}", {"title": bad}, "title", owner),
        ("PATCH", f"/api/tasks/{task['id']}", {"description": bad}, "description", owner),
    ]
    for method, url, body, field, user in attempts:
        # json.dumps escapes to ASCII: a lone surrogate travels as the JSON escape "\ud800".
        response = await client.request(
            method,
            url,
            content=json.dumps(body),
            headers={**user.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, (method, url, field, response.text)
        errors = response.json()["detail"]
        assert [err["loc"] for err in errors] == [["body", field]], errors
    assert await counts(app) == before


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "position",
    [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59.999999-00:01",
    ],
)
async def test_cursor_with_an_out_of_range_timestamp_is_400(
    client: httpx.AsyncClient, user_pool: list[User], position: str
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    cursor = b64(f"{position}|00000000-0000-0000-0000-000000000000")
    for url in (f"/api/boards/{board_id}/tasks", "/api/boards"):
        response = await client.get(url, params={"cursor": cursor}, headers=owner.headers)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"] == "invalid_cursor"
