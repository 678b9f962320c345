"""The Python client's REST helpers against the real API through the gateway, errors included."""

import asyncio
import uuid
from typing import Any

import pytest

from stack_client import AsyncStackClient, StackError

from .conftest import ClientStack
from .helpers import PASSWORD, patiently, sign_up


async def fails(call: Any, status: int, error: str) -> StackError:
    with pytest.raises(StackError) as caught:
        await call
    assert (caught.value.status, caught.value.error) == (status, error), caught.value
    return caught.value


async def test_session_register_login_me_update_logout(client_stack: ClientStack) -> None:
    async with AsyncStackClient(client_stack.base_url) as client:
        email = f"py-{uuid.uuid4().hex[:10]}@example.com"
        user = await patiently(lambda: client.register(email, PASSWORD, "Ada"))
        assert (user["email"], user["display_name"]) == (email, "Ada")
        taken = await fails(patiently(lambda: client.register(email, PASSWORD)), 409, "email_taken")
        assert isinstance(taken.detail, str)
        assert (await patiently(lambda: client.login(email, PASSWORD)))["id"] == user["id"]
        assert (await client.update_me(display_name="Ada L."))["display_name"] == "Ada L."
        await client.logout()
        assert not client.signed_in
        await fails(client.me(), 401, "not_authenticated")


async def test_wrong_password_and_validation_errors(client_stack: ClientStack) -> None:
    person = await sign_up(client_stack.base_url)
    async with AsyncStackClient(client_stack.base_url) as other:
        wrong = patiently(lambda: other.login(person.email, "wrong password 1"))
        error = await fails(wrong, 400, "invalid_grant")
        assert isinstance(error.detail, str)
    invalid = await fails(person.client.boards.create(""), 422, "validation_error")
    assert any("name" in item["loc"] for item in invalid.detail)
    await person.client.aclose()


async def test_concurrent_refreshes_share_one_request(client_stack: ClientStack) -> None:
    person = await sign_up(client_stack.base_url)
    signed_out: list[str] = []
    person.client.signed_out_listeners.append(signed_out.append)
    await asyncio.gather(*(person.client.refresh() for _ in range(3)))
    assert (await person.client.me())["id"] == person.me["id"]
    assert signed_out == []
    await person.client.aclose()


async def test_a_session_ended_elsewhere_signs_the_client_out(client_stack: ClientStack) -> None:
    person = await sign_up(client_stack.base_url)
    signed_out: list[str] = []
    person.client.signed_out_listeners.append(signed_out.append)
    async with AsyncStackClient(client_stack.base_url) as other:
        await patiently(lambda: other.login(person.email, PASSWORD))
        await other.update_me(password="a new password 2", current_password=PASSWORD)
    await fails(person.client.refresh(), 400, "invalid_grant")
    assert not person.client.signed_in
    assert len(signed_out) == 1
    await person.client.aclose()


async def test_boards_with_etags_pages_and_stale_if_match(client_stack: ClientStack) -> None:
    person = await sign_up(client_stack.base_url)
    client = person.client
    created = [await client.boards.create(f"Board {i}") for i in range(5)]
    board, etag = await client.request_with_etag("GET", f"/api/boards/{created[0]['id']}")
    assert etag == f'"{board["version"]}"'
    page = await client.boards.page(limit=2)
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    listed = [item["id"] async for item in client.boards.list(limit=2)]
    assert sorted(listed) == sorted(b["id"] for b in created)
    renamed = await client.boards.update(board["id"], name="Renamed", if_match=board["version"])
    assert renamed["version"] == board["version"] + 1
    stale = client.boards.update(board["id"], name="Stale", if_match=etag)
    await fails(stale, 412, "precondition_failed")
    assert (await client.boards.get(board["id"]))["name"] == "Renamed"
    await fails(client.boards.delete(board["id"], if_match=etag), 412, "precondition_failed")
    await client.boards.delete(board["id"], if_match=renamed["version"])
    await fails(client.boards.get(board["id"]), 404, "board_not_found")
    await client.aclose()


async def test_members_and_tasks(client_stack: ClientStack) -> None:
    owner, editor = await sign_up(client_stack.base_url), await sign_up(client_stack.base_url)
    board = await owner.client.boards.create("Team")
    assert (await owner.client.members.set(board["id"], editor.me["id"], "editor"))["role"] == (
        "editor"
    )
    roles = {m["role"] for m in await owner.client.members.list(board["id"])}
    assert roles == {"owner", "editor"}
    first = await editor.client.tasks.create(board["id"], title="First", assignee_id=owner.me["id"])
    for i in range(3):
        await editor.client.tasks.create(board["id"], title=f"T{i}", status="doing")
    doing = [t async for t in owner.client.tasks.list(board["id"], status="doing", limit=2)]
    assert len(doing) == 3
    mine = [t["id"] async for t in owner.client.tasks.list(board["id"], assignee_id=owner.me["id"])]
    assert mine == [first["id"]]
    moved = await owner.client.tasks.update(first["id"], {"status": "done"}, if_match=1)
    assert moved["status"] == "done"
    stale = owner.client.tasks.update(first["id"], {"title": "Lost"}, if_match='"1"')
    await fails(stale, 412, "precondition_failed")
    await fails(owner.client.tasks.create(board["id"], title="x", bogus=1), 422, "validation_error")
    await owner.client.tasks.delete(first["id"], if_match=moved["version"])
    await fails(owner.client.tasks.get(first["id"]), 404, "task_not_found")
    await editor.client.members.remove(board["id"], editor.me["id"])
    await fails(editor.client.boards.get(board["id"]), 404, "board_not_found")
    await owner.client.aclose()
    await editor.client.aclose()


async def test_comments(client_stack: ClientStack) -> None:
    owner, viewer = await sign_up(client_stack.base_url), await sign_up(client_stack.base_url)
    board = await owner.client.boards.create("Comments")
    found = await owner.client.lookup_user(viewer.me["email"].upper())
    assert found["id"] == viewer.me["id"]
    await owner.client.members.set(board["id"], found["id"], "viewer")
    task = await owner.client.tasks.create(board["id"], title="Discuss")
    first = await viewer.client.comments.create(task["id"], " First ")
    assert (first["body"], first["author_id"]) == ("First", viewer.me["id"])
    for i in range(3):
        await owner.client.comments.create(task["id"], f"C{i}")
    listed = [c["body"] async for c in viewer.client.comments.list(task["id"], limit=2)]
    assert listed == ["C2", "C1", "C0", "First"]
    page = await viewer.client.comments.page(task["id"], limit=3)
    assert len(page["items"]) == 3
    assert page["next_cursor"]
    await fails(owner.client.comments.update(first["id"], "Not mine"), 403, "forbidden")
    edited = await viewer.client.comments.update(first["id"], "Edited", if_match=1)
    assert edited["version"] == 2
    await fails(
        viewer.client.comments.update(first["id"], "Lost", if_match=1), 412, "precondition_failed"
    )
    assert (await owner.client.comments.get(first["id"]))["body"] == "Edited"
    await fails(viewer.client.comments.create(task["id"], ""), 422, "validation_error")
    await owner.client.comments.delete(first["id"], if_match=edited["version"])
    await fails(viewer.client.comments.get(first["id"]), 404, "comment_not_found")
    await owner.client.aclose()
    await viewer.client.aclose()


async def test_429_from_the_gateway_carries_retry_after(client_stack: ClientStack) -> None:
    async with AsyncStackClient(client_stack.base_url) as client:

        async def attempt(index: int) -> StackError | None:
            # Another email each time, so that auth's per-account throttling cannot answer first.
            try:
                await client.login(f"nobody-{index}-{uuid.uuid4().hex[:6]}@x.org", "wrong pass 1")
            except StackError as error:
                return error
            return None

        errors = await asyncio.gather(*(attempt(index) for index in range(30)))
    limited = [error for error in errors if error is not None and error.status == 429]
    assert limited, "the gateway never limited /auth/token"
    assert (limited[0].error, limited[0].retry_after) == ("rate_limited", 1.0)
    await asyncio.sleep(0.5)  # the bucket refills (at the test stack's rate) for later tests
