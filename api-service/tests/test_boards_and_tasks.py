import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from api_service.schemas import TaskOut

from .conftest import (
    User,
    add_member,
    create_board,
    create_task,
    events_on,
    one_of_two_edits_wins,
)


async def test_board_lifecycle_with_events(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner = user_pool[0]
    created = await client.post("/api/boards", json={"name": " Roadmap "}, headers=owner.headers)
    assert created.status_code == 201
    board = created.json()
    assert board["name"] == "Roadmap"
    assert board["role"] == "owner"
    assert board["version"] == 1
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == f"/api/boards/{board['id']}"

    renamed = await client.patch(
        f"/api/boards/{board['id']}",
        json={"name": "Plan"},
        headers={**owner.headers, "If-Match": '"1"'},
    )
    assert renamed.status_code == 200
    assert renamed.json()["version"] == 2
    assert renamed.headers["etag"] == '"2"'

    deleted = await client.delete(f"/api/boards/{board['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/boards/{board['id']}", headers=owner.headers)
    assert gone.status_code == 404

    types = [t for t, _ in await events_on(app, f"board:{board['id']}")]
    assert types == ["member.added", "board.updated", "board.deleted"]
    user_types = [(t, d["board_id"]) for t, d in await events_on(app, f"user:{owner.id}")]
    assert ("member.added", board["id"]) in user_types
    assert ("member.removed", board["id"]) in user_types


async def test_task_lifecycle_with_events(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner, editor = user_pool[0], user_pool[1]
    board_id = await create_board(client, owner)
    await add_member(client, board_id, owner, editor, "editor")

    task = await create_task(
        client, board_id, editor, title="Write", description="d", assignee_id=owner.id
    )
    assert task["status"] == "todo"
    assert task["created_by"] == editor.id
    assert task["version"] == 1

    moved = await client.patch(
        f"/api/tasks/{task['id']}",
        json={"status": "doing", "assignee_id": None},
        headers={**editor.headers, "If-Match": '"1"'},
    )
    assert moved.status_code == 200
    assert moved.json()["status"] == "doing"
    assert moved.json()["assignee_id"] is None
    assert moved.json()["title"] == "Write"

    fetched = await client.get(f"/api/tasks/{task['id']}", headers=owner.headers)
    assert fetched.json() == moved.json()
    assert fetched.headers["etag"] == '"2"'

    assert (
        await client.delete(f"/api/tasks/{task['id']}", headers=owner.headers)
    ).status_code == 204
    events = await events_on(app, f"board:{board_id}")
    assert [t for t, _ in events] == [
        "member.added",
        "member.added",
        "task.created",
        "task.updated",
        "task.deleted",
    ]
    assert events[3][1] == moved.json()
    assert events[4][1] == {"id": task["id"], "board_id": board_id}


async def test_a_task_reads_the_same_everywhere(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    """PostgreSQL renders tasks: the create response, a read, a page and the event must be the
    same JSON, with exactly the documented fields and types."""
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    created = await create_task(
        client,
        board_id,
        owner,
        title='Quote " and \\ ü',
        description="line\nbreak",
        status="doing",
        assignee_id=owner.id,
    )
    read = (await client.get(f"/api/tasks/{created['id']}", headers=owner.headers)).json()
    page = (await client.get(f"/api/boards/{board_id}/tasks", headers=owner.headers)).json()
    events = await events_on(app, f"board:{board_id}")

    assert read == created
    assert page == {"items": [created], "next_cursor": None}
    assert events[-1] == ("task.created", created)
    assert set(created) == set(TaskOut.model_fields)
    task = TaskOut.model_validate(created)
    assert (task.title, task.description) == ('Quote " and \\ ü', "line\nbreak")
    assert (task.status, str(task.assignee_id), str(task.board_id)) == ("doing", owner.id, board_id)
    async with app.state.db.engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT created_at FROM api.tasks WHERE id = CAST(:id AS uuid)"),
            {"id": created["id"]},
        )
    assert task.created_at == stored
    assert str(created["created_at"]).endswith("Z")


async def test_if_match_race_one_wins_one_412(
    client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)

    bodies = ({"title": "first"}, {"title": "second"})
    final = await one_of_two_edits_wins(client, f"/api/tasks/{task['id']}", bodies, owner)
    assert final["title"] in ("first", "second")


async def test_stale_if_match_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    events_before = len(await events_on(app, f"board:{board_id}"))
    for method, kwargs in (("PATCH", {"json": {"title": "x"}}), ("DELETE", {})):
        response = await client.request(
            method,
            f"/api/tasks/{task['id']}",
            headers={**owner.headers, "If-Match": '"7"'},
            **kwargs,
        )
        assert response.status_code == 412
    board_response = await client.patch(
        f"/api/boards/{board_id}", json={"name": "n"}, headers={**owner.headers, "If-Match": '"9"'}
    )
    assert board_response.status_code == 412
    assert (await client.get(f"/api/tasks/{task['id']}", headers=owner.headers)).json() == task
    assert len(await events_on(app, f"board:{board_id}")) == events_before


@pytest.mark.parametrize("if_match", ['"1", "2"', "*", ' "1" '])
async def test_if_match_accepts_lists_and_star(
    client: httpx.AsyncClient, user_pool: list[User], if_match: str
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    response = await client.patch(
        f"/api/tasks/{task['id']}",
        json={"title": "y"},
        headers={**owner.headers, "If-Match": if_match},
    )
    assert response.status_code == 200


async def test_last_owner_cannot_leave_or_be_demoted(
    client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner, other = user_pool[0], user_pool[1]
    board_id = await create_board(client, owner)
    demote = await client.put(
        f"/api/boards/{board_id}/members/{owner.id}", json={"role": "editor"}, headers=owner.headers
    )
    assert demote.status_code == 409
    assert demote.json()["error"] == "last_owner"
    leave = await client.delete(f"/api/boards/{board_id}/members/{owner.id}", headers=owner.headers)
    assert leave.status_code == 409

    await add_member(client, board_id, owner, other, "owner")
    leave = await client.delete(f"/api/boards/{board_id}/members/{owner.id}", headers=owner.headers)
    assert leave.status_code == 204
    members = (await client.get(f"/api/boards/{board_id}/members", headers=other.headers)).json()
    assert [(m["user_id"], m["role"]) for m in members] == [(other.id, "owner")]


async def test_concurrent_demotions_keep_an_owner(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    first, second = user_pool[0], user_pool[1]
    board_id = await create_board(client, first)
    await add_member(client, board_id, first, second, "owner")

    async def demote(actor: User, target: User) -> httpx.Response:
        return await client.put(
            f"/api/boards/{board_id}/members/{target.id}",
            json={"role": "viewer"},
            headers=actor.headers,
        )

    results = await asyncio.gather(demote(first, second), demote(second, first))
    async with app.state.db.engine.connect() as conn:
        owners = await conn.scalar(
            text(
                "SELECT count(*) FROM api.members"
                " WHERE board_id = CAST(:b AS uuid) AND role = 'owner'"
            ),
            {"b": board_id},
        )
    assert owners == 1, [r.status_code for r in results]
    assert sorted(r.status_code for r in results) == [200, 403]


async def test_assignee_must_be_a_member(client: httpx.AsyncClient, user_pool: list[User]) -> None:
    owner, outsider = user_pool[0], user_pool[5]
    board_id = await create_board(client, owner)
    response = await client.post(
        f"/api/boards/{board_id}/tasks",
        json={"title": "t", "assignee_id": outsider.id},
        headers=owner.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"] == "assignee_not_member"


async def test_boards_list_shows_only_memberships(
    client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner, viewer, outsider = user_pool[2], user_pool[3], user_pool[4]
    shared = await create_board(client, owner, "shared")
    await add_member(client, shared, owner, viewer, "viewer")
    await create_board(client, owner, "private")

    viewer_boards = (await client.get("/api/boards", headers=viewer.headers)).json()["items"]
    assert shared in [b["id"] for b in viewer_boards]
    assert all(b["id"] != shared or b["role"] == "viewer" for b in viewer_boards)
    outsider_boards = (await client.get("/api/boards", headers=outsider.headers)).json()["items"]
    assert shared not in [b["id"] for b in outsider_boards]
