import asyncio
import uuid

import asyncpg
import httpx
import pytest

from servicekit.db import asyncpg_dsn

from .conftest import Board, Stack, log_ids, open_sse, ticket


async def test_events_arrive_in_order_with_their_log_ids(stack: Stack, board: Board) -> None:
    async with open_sse(
        stack, stack.realtime_url, channels=[board.channel], headers=stack.headers(board.owner)
    ) as stream:
        ready = await stream.until("ready")
        assert ready.id is None
        assert ready.data["channels"] == [board.channel]
        # The log position the stream is live from: at least the board's newest event.
        assert ready.data["last_event_id"] >= max(await log_ids(stack, board.channel))
        task = await board.create_task("first")
        await board.update_task(task["id"], status="done")
        await board.delete_task(task["id"])

        received = [await stream.next() for _ in range(3)]

    assert [m.event for m in received] == ["task.created", "task.updated", "task.deleted"]
    ids = [m.id for m in received]
    assert ids == (await log_ids(stack, board.channel))[-3:]
    created = received[0].data
    assert set(created) == {"id", "channel", "type", "data", "actor_id", "created_at"}
    assert created["channel"] == board.channel
    assert created["actor_id"] == str(board.owner)
    assert created["data"]["title"] == "first"
    assert created["created_at"].endswith("Z")
    assert received[2].data["data"] == {"id": task["id"], "board_id": board.id}


async def test_stream_is_unbuffered_event_stream(stack: Stack, board: Board) -> None:
    async with (
        httpx.AsyncClient() as client,
        client.stream(
            "GET",
            f"{stack.realtime_url}/realtime/sse",
            params={"channels": board.channel},
            headers=stack.headers(board.owner),
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-cache"
        first = await anext(response.aiter_text())
        assert first.startswith("retry: ")


async def test_resume_while_writes_continue_loses_and_repeats_nothing(
    stack: Stack, board: Board
) -> None:
    start = max(await log_ids(stack, board.channel))
    writing = asyncio.create_task(write_tasks(board, 40))
    seen: list[int] = []
    async with open_sse(
        stack,
        stack.realtime_url,
        channels=[board.channel],
        headers=stack.headers(board.owner),
        params={"last_event_id": str(start)},
    ) as stream:
        while len(seen) < 10:
            message = await stream.next()
            if message.id is not None:
                seen.append(message.id)
    # Disconnected while the writer goes on; resume from the last id received.
    await asyncio.sleep(0.2)
    headers = {**stack.headers(board.owner), "Last-Event-ID": str(seen[-1])}
    async with open_sse(
        stack, stack.realtime_url, channels=[board.channel], headers=headers
    ) as stream:
        await writing
        expected = await log_ids(stack, board.channel, start)
        while seen[-1] != expected[-1]:
            message = await stream.next()
            if message.id is not None:
                seen.append(message.id)
    assert seen == expected


async def write_tasks(board: Board, count: int) -> None:
    for i in range(count):
        await board.create_task(f"t{i}")
        await asyncio.sleep(0.01)


async def test_cursor_ahead_of_the_log_gets_reset_then_live(stack: Stack, board: Board) -> None:
    headers = {**stack.headers(board.owner), "Last-Event-ID": str(10**12)}
    async with open_sse(
        stack, stack.realtime_url, channels=[board.channel], headers=headers
    ) as stream:
        assert (await stream.next()).event == "reset"
        assert (await stream.next()).event == "ready"
        await board.create_task("after reset")
        assert (await stream.next()).event == "task.created"


async def test_pruned_cursor_gets_reset(stack: Stack, board: Board) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(stack.database_url))
    try:
        old_watermark = await connection.fetchval(
            "SELECT pruned_through FROM eventlog.outbox_state"
        )
        first = min(await log_ids(stack, board.channel))
        await connection.execute("UPDATE eventlog.outbox_state SET pruned_through = $1", first + 1)
        params = {"last_event_id": str(first)}
        async with open_sse(
            stack,
            stack.realtime_url,
            channels=[board.channel],
            headers=stack.headers(board.owner),
            params=params,
        ) as stream:
            assert (await stream.next()).event == "reset"
    finally:
        await connection.execute(
            "UPDATE eventlog.outbox_state SET pruned_through = $1", old_watermark
        )
        await connection.close()


async def test_a_ticket_works_once(stack: Stack, board: Board) -> None:
    one_time = await ticket(stack, stack.realtime_url, board.owner)
    params = {"ticket": one_time}
    async with open_sse(stack, stack.realtime_url, channels=[board.channel], params=params) as s:
        await s.until("ready")
    async with httpx.AsyncClient() as client:
        again = await client.get(
            f"{stack.realtime_url}/realtime/sse",
            params={"channels": board.channel, "ticket": one_time},
        )
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_token"


async def test_an_expired_ticket_is_refused(stack: Stack, board: Board) -> None:
    one_time = await ticket(stack, stack.realtime_url, board.owner)
    connection = await asyncpg.connect(asyncpg_dsn(stack.database_url))
    await connection.execute("UPDATE realtime.tickets SET expires_at = now() - interval '1 s'")
    await connection.close()
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{stack.realtime_url}/realtime/sse",
            params={"channels": board.channel, "ticket": one_time},
        )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("params", "auth", "status"),
    [
        ({}, "none", 401),
        ({}, "garbage", 401),
        ({"access_token": "TOKEN"}, "none", 401),
        ({"ticket": "TOKEN"}, "none", 401),
        ({"token": "TOKEN"}, "none", 401),
        ({}, "other_user", 403),
        ({"channels": "user:OTHER"}, "owner", 403),
        ({"channels": "board:not-a-uuid"}, "owner", 422),
        ({"channels": "room:x"}, "owner", 422),
        ({"channels": ","}, "owner", 422),
        ({"channels": ",".join(f"user:{uuid.uuid4()}" for _ in range(21))}, "owner", 422),
        ({"last_event_id": "-1"}, "owner", 422),
        ({"last_event_id": "abc"}, "owner", 422),
    ],
)
async def test_refusals(
    stack: Stack, board: Board, params: dict[str, str], auth: str, status: int
) -> None:
    token = stack.token(board.owner)
    query = {"channels": board.channel, **params}
    query = {
        k: v.replace("TOKEN", token).replace("OTHER", str(uuid.uuid4())) for k, v in query.items()
    }
    headers = {
        "none": {},
        "garbage": {"Authorization": "Bearer not-a-token"},
        "owner": {"Authorization": f"Bearer {token}"},
        "other_user": stack.headers(uuid.uuid4()),
    }[auth]
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{stack.realtime_url}/realtime/sse", params=query, headers=headers
        )
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "detail"}


async def test_removed_member_stops_receiving_within_a_second(stack: Stack, board: Board) -> None:
    member = uuid.uuid4()
    await board.add(member, "viewer")
    async with open_sse(
        stack, stack.realtime_url, channels=[board.channel], headers=stack.headers(member)
    ) as stream:
        await stream.until("ready")
        await board.create_task("visible")
        await stream.until("task.created")
        await board.remove(member)
        ended = await stream.until("disconnect", timeout=1.0)
        assert ended.data["code"] == 4403
        await board.create_task("invisible")
        with pytest.raises((EOFError, TimeoutError)):
            await stream.next(timeout=0.5)


async def test_stream_ends_before_the_token_expires(stack: Stack, board: Board) -> None:
    headers = stack.headers(board.owner, ttl=7)
    async with open_sse(
        stack, stack.realtime_url, channels=[board.channel], headers=headers
    ) as stream:
        await stream.until("ready")
        ended = await stream.until("disconnect", timeout=5)
    assert ended.data["code"] == 4001
