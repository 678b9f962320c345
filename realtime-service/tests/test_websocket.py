import asyncio
import json
import os
import signal
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed

from devstack.testing import rss_bytes

from .conftest import (
    Board,
    RawWebSocket,
    RealtimeFactory,
    Stack,
    join,
    log_ids,
    open_sse,
    receive,
    receive_type,
    ticket,
    ws_connect,
)


async def closed_with(ws: object, timeout: float = 5.0) -> int:
    """Read until the server closes the connection; its close code."""
    with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()  # type: ignore[attr-defined]
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


async def test_subscribe_and_receive_events_in_order(stack: Stack, board: Board) -> None:
    setup = await log_ids(stack, board.channel)
    async with ws_connect(
        stack.realtime_url, ticket=await ticket(stack, stack.realtime_url, board.owner)
    ) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": board.channel}))
        subscribed = await receive(ws)
        assert set(subscribed) == {"type", "channel", "last_event_id"}
        assert (subscribed["type"], subscribed["channel"]) == ("subscribed", board.channel)
        # Subscribed without a position: the server follows the channel from the log's end.
        assert subscribed["last_event_id"] >= setup[-1]
        task = await board.create_task("ws")
        await board.update_task(task["id"], status="doing")
        await board.delete_task(task["id"])
        events = [await receive_type(ws, "event") for _ in range(3)]
    assert [e["event"] for e in events] == ["task.created", "task.updated", "task.deleted"]
    assert [e["id"] for e in events] == (await log_ids(stack, board.channel))[-3:]
    assert events[0]["id"] > subscribed["last_event_id"]
    assert set(events[0]) == {"type", "id", "channel", "event", "data", "actor_id", "created_at"}
    assert events[0]["data"]["title"] == "ws"


async def test_first_message_auth_and_ping(stack: Stack, board: Board) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive(ws) == {"type": "pong"}


async def test_resume_on_subscribe_loses_and_repeats_nothing(stack: Stack, board: Board) -> None:
    start = max(await log_ids(stack, board.channel))
    writing = asyncio.create_task(write_tasks(board, 30))
    seen: list[int] = []
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        await ws.send(
            json.dumps({"type": "subscribe", "channel": board.channel, "last_event_id": start})
        )
        while len(seen) < 8:
            seen.append((await receive_type(ws, "event"))["id"])
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        await ws.send(
            json.dumps({"type": "subscribe", "channel": board.channel, "last_event_id": seen[-1]})
        )
        await writing
        expected = await log_ids(stack, board.channel, start)
        while seen[-1] != expected[-1]:
            seen.append((await receive_type(ws, "event"))["id"])
    assert seen == expected


async def write_tasks(board: Board, count: int) -> None:
    for i in range(count):
        await board.create_task(f"t{i}")
        await asyncio.sleep(0.01)


async def test_unsubscribe_stops_delivery(stack: Stack, board: Board) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await join(ws, stack.token(board.owner), board.channel)
        await ws.send(json.dumps({"type": "unsubscribe", "channel": board.channel}))
        assert await receive_type(ws, "unsubscribed") == {
            "type": "unsubscribed",
            "channel": board.channel,
            "reason": "requested",
        }
        await board.create_task("unseen")
        await ws.send(json.dumps({"type": "ping"}))
        await asyncio.sleep(0.7)
        assert await receive(ws) == {"type": "pong"}
        with pytest.raises(TimeoutError):
            await receive(ws, timeout=0.3)


async def test_removed_member_is_unsubscribed_within_a_second(stack: Stack, board: Board) -> None:
    member = uuid.uuid4()
    await board.add(member, "editor")
    async with ws_connect(stack.realtime_url) as ws:
        await join(ws, stack.token(member), board.channel)
        await board.remove(member)
        notice = await receive_type(ws, "unsubscribed", timeout=1.0)
        assert notice == {"type": "unsubscribed", "channel": board.channel, "reason": "forbidden"}
        await board.create_task("after removal")
        with pytest.raises(TimeoutError):
            await receive_type(ws, "event", timeout=0.8)


async def test_auth_refresh_keeps_the_connection_past_the_first_token(
    stack: Stack, board: Board
) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner, ttl=3)}))
        warning = await receive_type(ws, "token_expiring")
        assert 0 < warning["expires_in"] <= 3
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner, ttl=600)}))
        await asyncio.sleep(3.5)
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive_type(ws, "pong") == {"type": "pong"}


async def test_publish_reaches_other_subscribers_not_the_sender(stack: Stack, board: Board) -> None:
    viewer = uuid.uuid4()
    await board.add(viewer, "viewer")
    async with ws_connect(stack.realtime_url) as sender, ws_connect(stack.realtime_url) as peer:
        for ws, user in ((sender, board.owner), (peer, viewer)):
            await join(ws, stack.token(user), board.channel)
        await sender.send(
            json.dumps({"type": "publish", "channel": board.channel, "data": {"typing": True}})
        )
        message = await receive_type(peer, "message")
        assert message == {
            "type": "message",
            "channel": board.channel,
            "from": str(board.owner),
            "data": {"typing": True},
        }
        await sender.send(json.dumps({"type": "ping"}))
        assert await receive(sender) == {"type": "pong"}, "the sender got its own message"

        # Viewers may not publish; oversized data is refused.
        await peer.send(json.dumps({"type": "publish", "channel": board.channel, "data": 1}))
        assert (await receive_type(peer, "error"))["code"] == "forbidden"
        big = {"type": "publish", "channel": board.channel, "data": "x" * 4100}
        await sender.send(json.dumps(big))
        assert (await receive_type(sender, "error"))["code"] == "too_large"


async def test_close_4401_for_a_bad_ticket_or_token(stack: Stack) -> None:
    async with ws_connect(stack.realtime_url, ticket="made-up") as ws:
        assert await closed_with(ws) == 4401
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "not.a.token"}))
        assert await closed_with(ws) == 4401
    jwt_as_ticket = stack.token(uuid.uuid4())
    async with ws_connect(stack.realtime_url, ticket=jwt_as_ticket) as ws:
        assert await closed_with(ws) == 4401


async def test_close_4401_when_refreshing_as_another_user(stack: Stack, board: Board) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        await ws.send(json.dumps({"type": "auth", "token": stack.token(uuid.uuid4())}))
        assert await closed_with(ws) == 4401


async def test_close_4403_for_a_channel_the_user_may_not_read(stack: Stack, board: Board) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(uuid.uuid4())}))
        await ws.send(json.dumps({"type": "subscribe", "channel": board.channel}))
        assert await closed_with(ws) == 4403


async def test_close_4008_without_auth_in_time(stack: Stack) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        assert await closed_with(ws, timeout=3) == 4008


async def test_close_4001_when_the_token_expires(stack: Stack, board: Board) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner, ttl=2)}))
        assert await closed_with(ws, timeout=5) == 4001


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": "dance"}',
        '{"type": "subscribe", "channel": "room:1"}',
        '{"type": "subscribe", "channel": 5}',
    ],
)
async def test_close_4400_for_protocol_errors(stack: Stack, board: Board, message: str) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        await ws.send(message)
        assert await closed_with(ws) == 4400


async def test_close_1009_for_an_oversized_message(stack: Stack, board: Board) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 9000}))
        assert await closed_with(ws) == 1009


async def test_close_4029_when_publishing_too_fast(stack: Stack, board: Board) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        for _ in range(40):
            await ws.send(json.dumps({"type": "publish", "channel": board.channel, "data": 1}))
        assert await closed_with(ws) == 4029


async def test_shutdown_closes_websockets_with_1012_and_ends_streams(
    stack: Stack, board: Board, realtime_process: RealtimeFactory
) -> None:
    async with realtime_process() as replica:
        headers = stack.headers(board.owner)
        async with (
            ws_connect(replica.url) as ws,
            open_sse(stack, replica.url, channels=[board.channel], headers=headers) as stream,
        ):
            await join(ws, stack.token(board.owner), board.channel)
            await stream.until("ready")
            started = time.monotonic()
            os.kill(replica.pid, signal.SIGTERM)
            assert await closed_with(ws) == 1012
            ended = await stream.until("disconnect")
            assert ended.data["code"] == 1012
        while _alive(replica.pid) and time.monotonic() - started < 10:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert not _alive(replica.pid), "the process did not exit after SIGTERM"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


async def test_close_1008_for_a_foreign_origin(stack: Stack) -> None:
    async with ws_connect(stack.realtime_url, origin="https://evil.example") as ws:
        assert await closed_with(ws) == 1008


@pytest.mark.slow  # not in `make test-fast`: fills a socket buffer of its own process
async def test_slow_consumer_is_cut_off_with_4002_and_resumes_without_loss(
    stack: Stack, board: Board, realtime_process: RealtimeFactory
) -> None:
    start = max(await log_ids(stack, board.channel))
    burst = 1000
    async with realtime_process(QUEUE_LIMIT="5") as replica:
        ws = await RawWebSocket.connect(replica.url)
        try:
            await ws.send_json({"type": "auth", "token": stack.token(board.owner)})
            await ws.send_json({"type": "subscribe", "channel": board.channel})
            rss_before = rss_bytes(replica.pid)
            # ~9 MB of events to a client that reads nothing: the kernel's buffers (4 MB at
            # most here) fill, the server's sends wait, and its per-connection queue overflows.
            await write_big_tasks(board, burst)
            rss_after = rss_bytes(replica.pid)
            assert await asyncio.wait_for(ws.close_code(), 30) == 4002
        finally:
            ws.close()
    # What the server holds for the stalled client is bounded (5 queued events, the transport's
    # high-water mark), not the 9 MB sent; the rest is the log reader's batches.
    assert rss_after - rss_before < 16 * 2**20, (rss_before, rss_after)
    # Resuming from the start loses nothing: the log is durable.
    seen: list[int] = []
    async with ws_connect(stack.realtime_url) as client:
        await client.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        await client.send(
            json.dumps({"type": "subscribe", "channel": board.channel, "last_event_id": start})
        )
        expected = await log_ids(stack, board.channel, start)
        while len(seen) < len(expected):
            seen.append((await receive_type(client, "event", timeout=15))["id"])
    assert seen == expected
    assert len(expected) == burst


async def write_big_tasks(board: Board, count: int) -> None:
    """`count` tasks of ~9 KB each, 20 writers at a time."""
    queue = list(range(count))

    async def writer() -> None:
        while queue:
            queue.pop()
            response = await board.client.post(
                f"/api/boards/{board.id}/tasks",
                json={"title": "big", "description": "x" * 9000},
                headers=board.stack.headers(board.owner),
            )
            assert response.status_code == 201

    await asyncio.gather(*(writer() for _ in range(20)))
