"""The blocking facade, as a script uses it (in a thread of its own: no event loop running)."""

import asyncio
import uuid

from stack_client import Event, StackClient, StackError

from .conftest import HEARTBEAT_SECONDS, ClientStack
from .helpers import PASSWORD


def script(base_url: str) -> tuple[list[str], StackError]:
    with StackClient(base_url) as client:
        email = f"sync-{uuid.uuid4().hex[:10]}@example.com"
        client.register(email, PASSWORD)
        assert client.signed_in is False
        client.login(email, PASSWORD)
        assert client.signed_in is True
        assert client.base_url == base_url
        board = client.boards.create("Sync")
        titles = [client.tasks.create(board["id"], title=f"T{i}")["title"] for i in range(3)]
        listed = sorted(task["title"] for task in client.tasks.list(board["id"], limit=2))
        assert listed == titles
        first_task = client.tasks.page(board["id"])["items"][0]["id"]
        client.comments.create(first_task, "blocking")
        assert [c["body"] for c in client.comments.list(first_task)] == ["blocking"]
        try:
            client.tasks.update(client.tasks.page(board["id"])["items"][0]["id"], {}, if_match=9)
        except StackError as error:
            stale = error
        seen = []
        channel = f"board:{board['id']}"
        items = client.subscribe([channel], transport="ws", heartbeat=HEARTBEAT_SECONDS)
        client.tasks.create(board["id"], title="live")
        for item in items:
            if isinstance(item, Event):
                seen.append(item.type)
                if item.type == "task.created":
                    break
        return seen, stale


async def test_the_blocking_client_works_from_a_script(client_stack: ClientStack) -> None:
    seen, stale = await asyncio.to_thread(script, client_stack.base_url)
    assert seen == ["task.created"]
    assert (stale.status, stale.error) == (412, "precondition_failed")
