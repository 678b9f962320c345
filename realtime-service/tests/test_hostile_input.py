"""Hostile numbers, frames and origins: the right status or close code, never a 500 or a
dropped socket; tickets spent on first sight and never logged."""

import json
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect

from devstack.testing import close_after_oversized_frame

from .conftest import (
    ORIGIN,
    Board,
    RealtimeFactory,
    Stack,
    join,
    receive,
    receive_type,
    ticket,
    ws_connect,
)
from .test_websocket import closed_with


@pytest.mark.parametrize(
    "raw",
    ["²", "٣", "\uff11\uff12", "1²", "+1", "-1", "1_000", "9223372036854775808", "9" * 19, ""],
)
@pytest.mark.parametrize("where", ["query", "header"])
async def test_sse_event_ids_are_ascii_digits_within_bigint(
    stack: Stack, board: Board, raw: str, where: str
) -> None:
    params = {"channels": board.channel}
    headers = stack.headers(board.owner)
    if where == "query":
        params["last_event_id"] = raw
    else:
        headers["Last-Event-ID"] = raw
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{stack.realtime_url}/realtime/sse",
            params=params,
            headers={k: v.encode() for k, v in headers.items()},  # type: ignore[misc]
        )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] in ("validation_error", "invalid_last_event_id"), body
    assert [issue["loc"][-1].lower() for issue in body["detail"]] == [
        "last_event_id" if where == "query" else "last-event-id"
    ], body


@pytest.mark.parametrize("last_event_id", ["²", "٣", "x", -1, 1.5, True, 2**63, [1], {"id": 1}, ""])
async def test_ws_bad_last_event_id_is_an_error_reply_and_the_socket_stays(
    stack: Stack, board: Board, last_event_id: object
) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        subscribe = {"type": "subscribe", "channel": board.channel, "last_event_id": last_event_id}
        await ws.send(json.dumps(subscribe))
        reply = await receive(ws)
        assert reply["type"] == "error", reply
        assert reply["code"] == "invalid_last_event_id"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await receive(ws))["type"] == "pong"


async def test_ws_last_event_id_as_ascii_digits_resumes(stack: Stack, board: Board) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        subscribe = {"type": "subscribe", "channel": board.channel, "last_event_id": "0"}
        await ws.send(json.dumps(subscribe))
        assert (await receive_type(ws, "subscribed"))["channel"] == board.channel


@pytest.mark.parametrize("depth", [33, 3000])
async def test_ws_deeply_nested_json_is_closed_4400(stack: Stack, board: Board, depth: int) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        await ws.send('{"type": "ping", "x": ' + "[" * depth + "]" * depth + "}")
        assert await closed_with(ws) == 4400


async def test_ws_nesting_up_to_32_levels_and_brackets_in_strings_are_fine(
    stack: Stack, board: Board
) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        await ws.send('{"type": "ping", "x": ' + "[" * 31 + "]" * 31 + ', "s": "' + "[" * 99 + '"}')
        assert (await receive(ws))["type"] == "pong"


@pytest.mark.parametrize("size", [9000, 1 << 20, 17 << 20])
async def test_ws_frames_over_the_cap_are_closed_1009_whatever_their_size(
    stack: Stack, board: Board, size: int
) -> None:
    auth = json.dumps({"type": "auth", "token": stack.token(board.owner)})
    url = stack.realtime_url.replace("http://", "ws://") + "/realtime/ws"
    code, reason = await close_after_oversized_frame(url, origin=ORIGIN, size=size, first=auth)
    assert code == 1009, (code, reason)
    assert "exceeds limit of 8192 bytes" in reason


async def test_a_ticket_presented_with_a_refused_origin_is_spent(
    stack: Stack, board: Board
) -> None:
    one_time = await ticket(stack, stack.realtime_url, board.owner)
    async with ws_connect(stack.realtime_url, ticket=one_time, origin="https://evil.example") as ws:
        assert await closed_with(ws) == 1008
    async with ws_connect(stack.realtime_url, ticket=one_time) as ws:
        assert await closed_with(ws) == 4401


async def test_uvicorn_does_not_log_tickets(
    stack: Stack, board: Board, realtime_process: RealtimeFactory
) -> None:
    async with realtime_process(LOG_LEVEL="INFO") as replica:
        one_time = await ticket(stack, replica.url, board.owner)
        async with ws_connect(replica.url, ticket=one_time) as ws:
            await ws.send(json.dumps({"type": "subscribe", "channel": board.channel}))
            await receive_type(ws, "subscribed")
        async with connect(
            replica.url.replace("http://", "ws://") + f"/realtime/ws?ticket={one_time}x",
            origin="https://evil.example",  # type: ignore[arg-type]
        ) as refused:
            assert await closed_with(refused) == 1008
        output = replica.output()
    assert "/realtime/ws" in output, "uvicorn logged no WebSocket line at INFO"
    assert one_time not in output
    assert "ticket=" not in output


async def test_subscribing_then_joining_stays_usable(stack: Stack, board: Board) -> None:
    """Control: the parsing above leaves ordinary subscriptions alone."""
    async with ws_connect(stack.realtime_url) as ws:
        await join(ws, stack.token(board.owner), board.channel)
        await board.create_task(f"t-{uuid.uuid4().hex[:6]}")
        event = await receive_type(ws, "event")
        # The board's creation is in the log before the join, but a loaded realtime may not
        # have read it yet: a subscription without a position starts from what it has read.
        if event["event"] == "member.added":
            event = await receive_type(ws, "event")
        assert event["event"] == "task.created"
