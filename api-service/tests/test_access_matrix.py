"""Every route x every kind of caller -> the status docs/contract.md §5 gives. A route the
app serves without a row here fails `test_every_route_has_a_row`."""

import re
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from .conftest import User, add_member, create_board, create_task

CALLERS = ("owner", "editor", "viewer", "non_member", "no_token", "bad_token")


@dataclass
class Scene:
    board_id: str
    task_id: str
    comment_id: str
    users: dict[str, User]
    newcomer: User

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "no_token":
            return {}
        if caller == "bad_token":
            return {"Authorization": "Bearer not.a.token"}
        return self.users[caller].headers


@pytest.fixture
async def scene(client: httpx.AsyncClient, user_pool: list[User]) -> Scene:
    owner, editor, viewer, outsider, newcomer = user_pool[:5]
    board_id = await create_board(client, owner)
    await add_member(client, board_id, owner, editor, "editor")
    await add_member(client, board_id, owner, viewer, "viewer")
    task = await create_task(client, board_id, owner)
    # Written by the editor: the owner may delete it but not edit it.
    comment = await client.post(
        f"/api/tasks/{task['id']}/comments", json={"body": "c"}, headers=editor.headers
    )
    assert comment.status_code == 201, comment.text
    users = {"owner": owner, "editor": editor, "viewer": viewer, "non_member": outsider}
    return Scene(board_id, str(task["id"]), comment.json()["id"], users, newcomer)


def row(*statuses: int) -> dict[str, int]:
    """Statuses for owner, editor, viewer, non-member; both unauthenticated callers get 401."""
    return dict(zip(CALLERS, (*statuses, 401, 401), strict=True))


MATRIX: list[tuple[str, str, dict[str, object] | None, dict[str, int]]] = [
    ("POST", "/api/boards", {"name": "b"}, row(201, 201, 201, 201)),
    ("GET", "/api/boards", None, row(200, 200, 200, 200)),
    ("GET", "/api/boards/{board}", None, row(200, 200, 200, 404)),
    ("PATCH", "/api/boards/{board}", {"name": "n"}, row(200, 200, 403, 404)),
    ("DELETE", "/api/boards/{board}", None, row(204, 403, 403, 404)),
    ("GET", "/api/boards/{board}/members", None, row(200, 200, 200, 404)),
    ("PUT", "/api/boards/{board}/members/{newcomer}", {"role": "viewer"}, row(200, 403, 403, 404)),
    ("DELETE", "/api/boards/{board}/members/{editor}", None, row(204, 204, 403, 404)),
    ("DELETE", "/api/boards/{board}/members/{viewer}", None, row(204, 403, 204, 404)),
    ("POST", "/api/boards/{board}/tasks", {"title": "t"}, row(201, 201, 403, 404)),
    ("GET", "/api/boards/{board}/tasks", None, row(200, 200, 200, 404)),
    ("GET", "/api/tasks/{task}", None, row(200, 200, 200, 404)),
    ("PATCH", "/api/tasks/{task}", {"status": "done"}, row(200, 200, 403, 404)),
    ("DELETE", "/api/tasks/{task}", None, row(204, 204, 403, 404)),
    ("POST", "/api/tasks/{task}/comments", {"body": "c"}, row(201, 201, 201, 404)),
    ("GET", "/api/tasks/{task}/comments", None, row(200, 200, 200, 404)),
    ("GET", "/api/comments/{comment}", None, row(200, 200, 200, 404)),
    ("PATCH", "/api/comments/{comment}", {"body": "e"}, row(403, 200, 403, 404)),
    ("DELETE", "/api/comments/{comment}", None, row(204, 204, 403, 404)),
]


def _route_shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_route_has_a_row(app: FastAPI) -> None:
    """Every operation in the app's OpenAPI document (every route a client can call) has a
    row: a new route cannot ship without its access rules being written down and tested."""
    served = {
        (method.upper(), _route_shape(path))
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    covered = {(method, _route_shape(path)) for method, path, _, _ in MATRIX}
    assert served - covered == set(), "routes without a row in MATRIX"
    assert covered - served == set(), "rows for routes the app does not serve"


CASES = [
    pytest.param(method, path, body, caller, expected[caller], id=f"{method} {path} as {caller}")
    for method, path, body, expected in MATRIX
    for caller in CALLERS
]


@pytest.mark.parametrize(("method", "path", "body", "caller", "expected"), CASES)
async def test_access(
    client: httpx.AsyncClient,
    scene: Scene,
    method: str,
    path: str,
    body: dict[str, object] | None,
    caller: str,
    expected: int,
) -> None:
    url = path.format(
        board=scene.board_id,
        task=scene.task_id,
        comment=scene.comment_id,
        newcomer=scene.newcomer.id,
        editor=scene.users["editor"].id,
        viewer=scene.users["viewer"].id,
    )
    response = await client.request(method, url, json=body, headers=scene.headers(caller))

    assert response.status_code == expected, response.text
    if expected >= 400:
        assert set(response.json()) == {"error", "detail"}
    if expected == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
