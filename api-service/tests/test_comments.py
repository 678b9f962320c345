"""Comments on tasks: the resource built by following docs/adding-a-resource.md. Who may do
what is in test_access_matrix.py; here, what each route does and the events it records."""

import uuid

import httpx
import pytest
from fastapi import FastAPI

from api_service.access import role_on_board

from .conftest import (
    User,
    add_member,
    create_board,
    create_task,
    events_on,
    one_of_two_edits_wins,
)


async def comment_on(
    client: httpx.AsyncClient, task_id: object, author: User, body: str = "A comment"
) -> dict[str, object]:
    response = await client.post(
        f"/api/tasks/{task_id}/comments", json={"body": body}, headers=author.headers
    )
    assert response.status_code == 201, response.text
    comment: dict[str, object] = response.json()
    return comment


async def test_a_comment_lifecycle_records_its_events(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner, viewer = user_pool[0], user_pool[1]
    board_id = await create_board(client, owner)
    await add_member(client, board_id, owner, viewer, "viewer")
    task = await create_task(client, board_id, owner)

    created = await client.post(
        f"/api/tasks/{task['id']}/comments", json={"body": "  Looks good  "}, headers=viewer.headers
    )
    assert created.status_code == 201, created.text
    comment = created.json()
    assert comment["body"] == "Looks good"
    assert (comment["task_id"], comment["board_id"]) == (task["id"], board_id)
    assert comment["author_id"] == viewer.id
    assert comment["version"] == 1
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == f"/api/comments/{comment['id']}"

    read = await client.get(f"/api/comments/{comment['id']}", headers=owner.headers)
    assert read.json() == comment
    assert read.headers["etag"] == '"1"'

    edited = await client.patch(
        f"/api/comments/{comment['id']}",
        json={"body": "Looks great"},
        headers={**viewer.headers, "If-Match": '"1"'},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["body"] == "Looks great"
    assert edited.json()["version"] == 2
    assert edited.headers["etag"] == '"2"'
    assert edited.json()["updated_at"] > comment["updated_at"]

    deleted = await client.delete(
        f"/api/comments/{comment['id']}", headers={**owner.headers, "If-Match": '"2"'}
    )
    assert deleted.status_code == 204
    gone = await client.get(f"/api/comments/{comment['id']}", headers=owner.headers)
    assert gone.status_code == 404
    assert gone.json()["error"] == "comment_not_found"

    events = [e for e in await events_on(app, f"board:{board_id}") if e[0].startswith("comment.")]
    assert events == [
        ("comment.created", comment),
        ("comment.updated", edited.json()),
        (
            "comment.deleted",
            {"id": comment["id"], "task_id": task["id"], "board_id": board_id},
        ),
    ]


async def test_pages_are_newest_first_and_complete(
    client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    other_task = await create_task(client, board_id, owner)
    written = [(await comment_on(client, task["id"], owner, f"c{n}"))["id"] for n in range(5)]
    await comment_on(client, other_task["id"], owner, "elsewhere")

    seen: list[object] = []
    cursor = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await client.get(
            f"/api/tasks/{task['id']}/comments", params=params, headers=owner.headers
        )
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == written[::-1]

    bad = await client.get(
        f"/api/tasks/{task['id']}/comments", params={"cursor": "nope"}, headers=owner.headers
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_cursor"


async def test_only_the_author_edits_and_the_author_or_an_owner_deletes(
    client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner, editor, viewer = user_pool[:3]
    board_id = await create_board(client, owner)
    await add_member(client, board_id, owner, editor, "editor")
    await add_member(client, board_id, owner, viewer, "viewer")
    task = await create_task(client, board_id, owner)
    by_viewer = await comment_on(client, task["id"], viewer)
    by_editor = await comment_on(client, task["id"], editor)

    for someone_else in (owner, editor):
        refused = await client.patch(
            f"/api/comments/{by_viewer['id']}", json={"body": "x"}, headers=someone_else.headers
        )
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"
    not_theirs = await client.delete(f"/api/comments/{by_editor['id']}", headers=viewer.headers)
    assert not_theirs.status_code == 403

    own = await client.delete(f"/api/comments/{by_viewer['id']}", headers=viewer.headers)
    assert own.status_code == 204
    by_owner = await client.delete(f"/api/comments/{by_editor['id']}", headers=owner.headers)
    assert by_owner.status_code == 204


async def test_a_stale_or_malformed_if_match_changes_nothing(
    client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    comment = await comment_on(client, task["id"], owner, "first")
    url = f"/api/comments/{comment['id']}"

    stale = await client.patch(
        url, json={"body": "second"}, headers={**owner.headers, "If-Match": '"7"'}
    )
    assert stale.status_code == 412
    malformed = await client.delete(url, headers={**owner.headers, "If-Match": "7"})
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "invalid_if_match"
    stale_delete = await client.delete(url, headers={**owner.headers, "If-Match": '"2"'})
    assert stale_delete.status_code == 412

    unchanged = await client.get(url, headers=owner.headers)
    assert unchanged.json() == comment


async def test_two_edits_from_one_version_one_wins(
    client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    """Both read version 1; the ORM's versioned UPDATE lets one through and the other is 412."""
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    comment = await comment_on(client, task["id"], owner)

    bodies = ({"body": "edit 0"}, {"body": "edit 1"})
    final = await one_of_two_edits_wins(client, f"/api/comments/{comment['id']}", bodies, owner)
    assert final["body"] in ("edit 0", "edit 1")


async def test_deleting_a_task_deletes_its_comments(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    comments = [await comment_on(client, task["id"], owner) for _ in range(2)]

    deleted = await client.delete(f"/api/tasks/{task['id']}", headers=owner.headers)
    assert deleted.status_code == 204

    for comment in comments:
        gone = await client.get(f"/api/comments/{comment['id']}", headers=owner.headers)
        assert gone.status_code == 404
    listed = await client.get(f"/api/tasks/{task['id']}/comments", headers=owner.headers)
    assert listed.status_code == 404
    assert listed.json()["error"] == "task_not_found"
    # The contract: `task.deleted` says its comments went with it (docs/contract.md).
    types = [t for t, _ in await events_on(app, f"board:{board_id}")]
    assert types[-1] == "task.deleted"
    assert "comment.deleted" not in types


async def test_non_members_get_the_same_404_as_for_the_task(
    client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner, outsider = user_pool[0], user_pool[3]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    comment = await comment_on(client, task["id"], owner)

    for method, url, body in (
        ("POST", f"/api/tasks/{task['id']}/comments", {"body": "hi"}),
        ("GET", f"/api/tasks/{task['id']}/comments", None),
    ):
        response = await client.request(method, url, json=body, headers=outsider.headers)
        assert response.status_code == 404
        assert response.json()["error"] == "task_not_found"
    response = await client.get(f"/api/comments/{comment['id']}", headers=outsider.headers)
    assert response.json()["error"] == "comment_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"body": ""},
        {"body": "   "},
        {"body": "a\x00b"},
        {"body": "x" * 10_001},
        {"body": "ok", "author_id": "00000000-0000-0000-0000-000000000000"},
        {"body": None},
        {},
    ],
    ids=["empty", "blank", "nul", "too-long", "unknown-field", "null", "missing"],
)
async def test_bad_bodies_are_422_and_store_nothing(
    client: httpx.AsyncClient, user_pool: list[User], body: dict[str, object]
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    comment = await comment_on(client, task["id"], owner, "kept")
    comments_url = f"/api/tasks/{task['id']}/comments"

    created = await client.post(comments_url, json=body, headers=owner.headers)
    edited = await client.patch(f"/api/comments/{comment['id']}", json=body, headers=owner.headers)

    for response in (created, edited):
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "validation_error"
    listed = await client.get(comments_url, headers=owner.headers)
    assert listed.json()["items"] == [comment]


async def test_role_on_board_reads_membership_in_the_session(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    """The ORM path's role lookup for a resource that hangs off a board directly."""
    owner, viewer, outsider = user_pool[0], user_pool[1], user_pool[3]
    board_id = await create_board(client, owner)
    await add_member(client, board_id, owner, viewer, "viewer")
    async with app.state.db.sessionmaker() as session:
        roles = [
            await role_on_board(session, uuid.UUID(board_id), uuid.UUID(user.id))
            for user in (owner, viewer, outsider)
        ]
    assert roles == ["owner", "viewer", None]
