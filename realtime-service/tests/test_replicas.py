"""Several realtime processes on one database."""

import asyncio
import json
import os
import signal
import uuid

import httpx
import pytest

from .conftest import (
    Board,
    RealtimeFactory,
    Stack,
    join,
    log_ids,
    open_sse,
    receive_type,
    ws_connect,
)

# Left out of `make test-fast` (docs/testing.md): several realtime processes, one killed.
pytestmark = pytest.mark.slow


async def test_a_client_on_each_replica_gets_every_event_once(
    stack: Stack, board: Board, realtime_process: RealtimeFactory
) -> None:
    start = max(await log_ids(stack, board.channel))
    headers = stack.headers(board.owner)
    async with (
        realtime_process() as second,
        open_sse(stack, stack.realtime_url, channels=[board.channel], headers=headers) as one,
        open_sse(stack, second.url, channels=[board.channel], headers=headers) as two,
    ):
        await one.until("ready")
        await two.until("ready")
        for i in range(15):
            await board.create_task(f"t{i}")
        expected = await log_ids(stack, board.channel, start)
        got_one = [(await one.next()).id for _ in expected]
        got_two = [(await two.next()).id for _ in expected]
    assert got_one == expected
    assert got_two == expected


async def test_ephemeral_messages_cross_replicas(
    stack: Stack, board: Board, realtime_process: RealtimeFactory
) -> None:
    peer_user = uuid.uuid4()
    await board.add(peer_user, "viewer")
    async with (
        realtime_process() as second,
        ws_connect(stack.realtime_url) as sender,
        ws_connect(second.url) as peer,
    ):
        for ws, user in ((sender, board.owner), (peer, peer_user)):
            await join(ws, stack.token(user), board.channel)
        await sender.send(
            json.dumps({"type": "publish", "channel": board.channel, "data": {"here": True}})
        )
        message = await receive_type(peer, "message")
    assert message["from"] == str(board.owner)
    assert message["data"] == {"here": True}


async def test_killing_a_replica_mid_stream_and_resuming_on_another_loses_nothing(
    stack: Stack, board: Board, realtime_process: RealtimeFactory
) -> None:
    start = max(await log_ids(stack, board.channel))

    async def write() -> None:
        for i in range(40):
            await board.create_task(f"w{i}")
            await asyncio.sleep(0.05)

    writing = asyncio.create_task(write())
    seen: list[int] = []
    headers = stack.headers(board.owner)
    async with realtime_process() as doomed:
        params = {"last_event_id": str(start)}
        try:
            async with open_sse(
                stack, doomed.url, channels=[board.channel], headers=headers, params=params
            ) as stream:
                while len(seen) < 10:
                    message = await stream.next()
                    if message.id is not None:
                        seen.append(message.id)
                os.kill(doomed.pid, signal.SIGKILL)
                while True:
                    message = await stream.next()
                    if message.id is not None:
                        seen.append(message.id)
        except (httpx.TransportError, EOFError):
            pass  # the stream breaks when the process dies
    resume = {**headers, "Last-Event-ID": str(seen[-1])}
    async with open_sse(stack, stack.realtime_url, channels=[board.channel], headers=resume) as s:
        await writing
        expected = await log_ids(stack, board.channel, start)
        while seen[-1] != expected[-1]:
            message = await s.next()
            if message.id is not None:
                seen.append(message.id)
    assert seen == expected
