"""Smaller parts of the contract: heartbeats, WebSocket reset, metrics names."""

import json

import httpx

from .conftest import Board, RealtimeFactory, Stack, join, receive, receive_type, ws_connect


async def test_sse_sends_comment_heartbeats(
    stack: Stack, board: Board, realtime_process: RealtimeFactory
) -> None:
    async with (
        realtime_process(HEARTBEAT_SECONDS="0.3") as replica,
        httpx.AsyncClient(timeout=5) as client,
        client.stream(
            "GET",
            f"{replica.url}/realtime/sse",
            params={"channels": board.channel},
            headers=stack.headers(board.owner),
        ) as response,
    ):
        lines = []
        async for line in response.aiter_lines():
            lines.append(line)
            if line.startswith(":"):
                break
    assert ": heartbeat" in lines


async def test_websocket_resume_from_a_cursor_ahead_of_the_log_is_reset(
    stack: Stack, board: Board
) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": stack.token(board.owner)}))
        subscribe = {"type": "subscribe", "channel": board.channel, "last_event_id": 10**12}
        await ws.send(json.dumps(subscribe))
        subscribed = await receive(ws)
        assert (subscribed["type"], subscribed["channel"]) == ("subscribed", board.channel)
        # The position to follow from is the log's end, not the cursor that was ahead of it.
        assert subscribed["last_event_id"] < 10**12
        assert (await receive(ws))["code"] == "reset"
        await board.create_task("live after reset")
        live = await receive_type(ws, "event")
        assert live["event"] == "task.created"
        assert live["id"] > subscribed["last_event_id"]


async def test_metrics_of_the_contract_are_exported(stack: Stack, board: Board) -> None:
    async with ws_connect(stack.realtime_url) as ws:
        await join(ws, stack.token(board.owner), board.channel)
        await board.create_task("counted")
        await receive_type(ws, "event")
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{stack.realtime_url}/metrics")).text
    for name in (
        'realtime_connections{transport="ws"}',
        'realtime_events_delivered_total{transport="ws"}',
        "realtime_delivery_latency_seconds_bucket",
        "realtime_disconnects_total",
        'realtime_replays_total{result="reset"}',
        "http_requests_total",
    ):
        assert name in metrics, name
    ws_connections = next(
        line
        for line in metrics.splitlines()
        if line.startswith('realtime_connections{transport="ws"}')
    )
    assert float(ws_connections.split()[-1]) >= 1


async def test_the_openapi_document_declares_how_sse_authenticates(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        document = (await client.get(f"{stack.realtime_url}/realtime/openapi.json")).json()
    operation = document["paths"]["/realtime/sse"]["get"]
    # Either scheme is enough: two requirements, not one with both.
    assert operation["security"] == [{"OAuth2PasswordBearer": []}, {"ticket": []}]
    schemes = document["components"]["securitySchemes"]
    assert schemes["ticket"] == {
        "type": "apiKey",
        "in": "query",
        "name": "ticket",
        "description": schemes["ticket"]["description"],
    }
    assert schemes["OAuth2PasswordBearer"]["type"] == "oauth2"
