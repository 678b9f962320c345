import base64

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from .conftest import User, add_member, create_board, create_task, settled


async def walk(
    client: httpx.AsyncClient, user: User, url: str, params: dict[str, str], on_page: object = None
) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        response = await client.get(url, params=query, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(item["id"] for item in page["items"])
        if callable(on_page):
            await on_page()
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


async def test_walking_pages_while_tasks_are_inserted_sees_each_task_once(
    client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    initial = [
        str((await create_task(client, board_id, owner, title=f"t{i}"))["id"]) for i in range(250)
    ]

    async def insert_one() -> None:
        await create_task(client, board_id, owner, title="inserted while paging")

    seen = await walk(client, owner, f"/api/boards/{board_id}/tasks", {"limit": "37"}, insert_one)

    assert len(seen) == len(set(seen)), "a task was seen twice"
    assert set(initial) <= set(seen), "a task that existed at the start was skipped"
    assert seen[: len(initial)] == list(reversed(initial)), "not newest first"


async def test_filters_combine_with_the_cursor(
    client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner, editor = user_pool[0], user_pool[1]
    board_id = await create_board(client, owner)
    await add_member(client, board_id, owner, editor, "editor")
    expected = []
    for i in range(40):
        status = ("todo", "doing", "done")[i % 3]
        assignee = editor.id if i % 2 else None
        task = await create_task(client, board_id, owner, status=status, assignee_id=assignee)
        if status == "done" and assignee == editor.id:
            expected.append(task["id"])

    seen = await walk(
        client,
        owner,
        f"/api/boards/{board_id}/tasks",
        {"limit": "2", "status": "done", "assignee_id": editor.id},
    )
    assert seen == list(reversed(expected))

    boards = await walk(client, owner, "/api/boards", {"limit": "3"})
    assert board_id in boards
    assert len(boards) == len(set(boards))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "!!!!",
        b64(b"garbage"),
        b64(b"2026-01-01T00:00:00+00:00|not-a-uuid"),
        b64(b"2026-01-01T00:00:00|00000000-0000-0000-0000-000000000000"),
        b64(b"yesterday|00000000-0000-0000-0000-000000000000"),
        b64(b"' OR 1=1 --|x"),
        b64("\u00ff\u00fe".encode("latin-1")),
    ],
)
async def test_forged_cursors_are_400(
    client: httpx.AsyncClient, user_pool: list[User], cursor: str
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    for url in (f"/api/boards/{board_id}/tasks", "/api/boards"):
        response = await client.get(url, params={"cursor": cursor}, headers=owner.headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_cursor"


async def test_truncated_cursor_is_400(client: httpx.AsyncClient, user_pool: list[User]) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    for _ in range(3):
        await create_task(client, board_id, owner)
    page = await client.get(
        f"/api/boards/{board_id}/tasks", params={"limit": "1"}, headers=owner.headers
    )
    cursor = page.json()["next_cursor"]
    response = await client.get(
        f"/api/boards/{board_id}/tasks", params={"cursor": cursor[:-5]}, headers=owner.headers
    )
    assert response.status_code == 400


@pytest.mark.parametrize("limit", ["0", "101", "-1", "x", "1.5", ""])
async def test_bad_limits_are_422(
    client: httpx.AsyncClient, user_pool: list[User], limit: str
) -> None:
    response = await client.get(
        "/api/boards", params={"limit": limit}, headers=user_pool[0].headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize(
    "path", ["/api/boards/not-a-uuid", "/api/tasks/123", "/api/boards/1'%20OR%201=1/tasks"]
)
async def test_malformed_uuids_in_paths_are_422(
    client: httpx.AsyncClient, user_pool: list[User], path: str
) -> None:
    response = await client.get(path, headers=user_pool[0].headers)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def counts(app: FastAPI) -> tuple[int, int, int]:
    await settled(app)
    async with app.state.db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM api.tasks), (SELECT count(*) FROM api.boards),"
                    " (SELECT count(*) FROM eventlog.events)"
                )
            )
        ).one()
    return (row[0], row[1], row[2])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x" * 201}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": 5}, "title"),
        ({"title": None}, "title"),
        ({}, "title"),
        ({"title": "t", "description": "d" * 10_001}, "description"),
        ({"title": "t", "status": "blocked"}, "status"),
        ({"title": "t", "assignee_id": "nobody"}, "assignee_id"),
        ({"title": "t", "board_id": "00000000-0000-0000-0000-000000000000"}, "board_id"),
        ({"title": "t", "version": 9}, "version"),
    ],
)
async def test_hostile_task_bodies_are_422_and_write_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    user_pool: list[User],
    body: dict[str, object],
    field: str,
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    before = await counts(app)

    created = await client.post(f"/api/boards/{board_id}/tasks", json=body, headers=owner.headers)
    patch_body = body or {"title": None}  # an empty PATCH is valid; null is not
    patched = await client.patch(f"/api/tasks/{task['id']}", json=patch_body, headers=owner.headers)

    for response in (created, patched):
        assert response.status_code == 422, response.text
        assert any(err["loc"][-1] == field for err in response.json()["detail"])
    assert await counts(app) == before


@pytest.mark.parametrize(
    "body", [{"name": "n" * 101}, {"name": " "}, {"name": 1}, {}, {"nam": "x"}]
)
async def test_hostile_board_bodies_are_422(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User], body: dict[str, object]
) -> None:
    before = await counts(app)
    response = await client.post("/api/boards", json=body, headers=user_pool[0].headers)
    assert response.status_code == 422
    assert await counts(app) == before


@pytest.mark.parametrize("role", ["admin", "", None, 1, "OWNER"])
async def test_unknown_roles_are_422(
    client: httpx.AsyncClient, user_pool: list[User], role: object
) -> None:
    owner, other = user_pool[0], user_pool[1]
    board_id = await create_board(client, owner)
    response = await client.put(
        f"/api/boards/{board_id}/members/{other.id}", json={"role": role}, headers=owner.headers
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    "if_match", ["abc", '"x"', 'W/"1"', '"1",', '"-1"', '"1" "2"', '"' + "9" * 12 + '"']
)
async def test_malformed_if_match_is_400_and_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User], if_match: str
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    before = await counts(app)
    for method, url, kwargs in (
        ("PATCH", f"/api/tasks/{task['id']}", {"json": {"title": "x"}}),
        ("DELETE", f"/api/tasks/{task['id']}", {}),
        ("PATCH", f"/api/boards/{board_id}", {"json": {"name": "x"}}),
        ("DELETE", f"/api/boards/{board_id}", {}),
    ):
        response = await client.request(
            method, url, headers={**owner.headers, "If-Match": if_match}, **kwargs
        )
        assert response.status_code == 400, (method, url, response.text)
        assert response.json()["error"] == "invalid_if_match"
    assert await counts(app) == before
