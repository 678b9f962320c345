"""Every event api-service writes is of a declared type (eventlog.types): a board's whole life,
through the API, leaves only declared types in the log. A resource that declares event types
adds its writes to this life (docs/adding-a-resource.md, step 8)."""

import httpx
from fastapi import FastAPI

from api_service import events as api_events
from eventlog.types import EVENT_TYPES, EventType

from .conftest import User, add_member, create_board, create_task, events_on


async def test_every_type_in_the_log_is_declared(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner, member = user_pool[0], user_pool[1]
    board_id = await create_board(client, owner)
    await client.patch(f"/api/boards/{board_id}", json={"name": "renamed"}, headers=owner.headers)
    await add_member(client, board_id, owner, member, "viewer")
    await add_member(client, board_id, owner, member, "editor")
    task = await create_task(client, board_id, member)
    await client.patch(f"/api/tasks/{task['id']}", json={"title": "t"}, headers=member.headers)
    comment = await client.post(
        f"/api/tasks/{task['id']}/comments", json={"body": "c"}, headers=member.headers
    )
    comment_url = f"/api/comments/{comment.json()['id']}"
    await client.patch(comment_url, json={"body": "d"}, headers=member.headers)
    await client.delete(comment_url, headers=member.headers)
    await client.delete(f"/api/tasks/{task['id']}", headers=member.headers)
    await client.delete(f"/api/boards/{board_id}/members/{member.id}", headers=owner.headers)
    await client.delete(f"/api/boards/{board_id}", headers=owner.headers)
    written = {event_type for event_type, _ in await events_on(app, f"board:{board_id}")}
    declared = {value.name for value in vars(api_events).values() if isinstance(value, EventType)}
    # The lifecycle wrote every type api-service declares, and nothing undeclared.
    assert written == declared
    assert written <= EVENT_TYPES.names()
