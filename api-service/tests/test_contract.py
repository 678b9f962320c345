"""api-service's database contract (docs/contract.md §5): `api.board_role(board, user)`, what
other services may read of membership, answers what the API says, through every change."""

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from .conftest import User, add_member, create_board


async def board_role(app: FastAPI, board_id: str, user_id: str) -> str | None:
    async with app.state.db.engine.connect() as conn:
        role: str | None = await conn.scalar(
            text("SELECT api.board_role(CAST(:b AS uuid), CAST(:u AS uuid))"),
            {"b": board_id, "u": user_id},
        )
        return role


async def api_roles(client: httpx.AsyncClient, board_id: str, owner: User) -> dict[str, str]:
    members = await client.get(f"/api/boards/{board_id}/members", headers=owner.headers)
    assert members.status_code == 200
    return {member["user_id"]: member["role"] for member in members.json()}


async def test_board_role_answers_as_the_api_does_through_every_change(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner, editor, viewer = user_pool[0], user_pool[1], user_pool[2]
    board_id = await create_board(client, owner)
    await add_member(client, board_id, owner, editor, "editor")
    await add_member(client, board_id, owner, viewer, "viewer")

    async def agrees() -> None:
        roles = await api_roles(client, board_id, owner)
        for user in (owner, editor, viewer):
            assert await board_role(app, board_id, user.id) == roles.get(user.id)

    await agrees()
    assert await board_role(app, board_id, viewer.id) == "viewer"
    await client.put(
        f"/api/boards/{board_id}/members/{viewer.id}",
        json={"role": "editor"},
        headers=owner.headers,
    )
    await agrees()
    removed = await client.delete(
        f"/api/boards/{board_id}/members/{editor.id}", headers=owner.headers
    )
    assert removed.status_code == 204
    await agrees()
    assert await board_role(app, board_id, editor.id) is None
    assert await board_role(app, board_id, str(uuid.uuid4())) is None
    deleted = await client.delete(f"/api/boards/{board_id}", headers=owner.headers)
    assert deleted.status_code == 204
    assert await board_role(app, board_id, owner.id) is None
