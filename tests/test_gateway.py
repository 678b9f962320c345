"""Through the gateway only: the user journey and what nginx itself must do."""

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from devstack.launcher import WEB_FILES
from devstack.testing import SseStream, close_after_oversized_frame

from .conftest import NativeStack, User, sign_up


@asynccontextmanager
async def sse(
    base_url: str, params: dict[str, str], headers: dict[str, str] | None = None
) -> AsyncIterator[SseStream]:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as client,
        client.stream(
            "GET", f"{base_url}/realtime/sse", params=params, headers=headers or {}
        ) as response,
    ):
        assert response.status_code == 200, (await response.aread()).decode()
        yield SseStream(response)


async def ticket(gateway: httpx.AsyncClient, user: User) -> str:
    response = await gateway.post("/realtime/tickets", headers=user.headers)
    assert response.status_code == 201, response.text
    value: str = response.json()["ticket"]
    return value


async def next_event(ws: ClientConnection) -> dict[str, object]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message["type"] == "event":
            return message  # type: ignore[no-any-return]


@pytest.mark.compose
async def test_the_page_and_the_client_are_served_as_their_sources_are(
    gateway: httpx.AsyncClient,
) -> None:
    """Natively from the sources themselves, in compose from the gateway image built from
    them: either way byte for byte what the repository holds, the client under the name the
    page imports it by."""
    for name, source in WEB_FILES.items():
        response = await gateway.get(f"/web/{name}")
        assert response.status_code == 200, name
        assert response.content == source.read_bytes(), name
    page = await gateway.get("/")
    assert page.content == WEB_FILES["index.html"].read_bytes()


@pytest.mark.compose
async def test_the_journey(gateway: httpx.AsyncClient, base_url: str) -> None:
    alice, bob = await sign_up(gateway), await sign_up(gateway)
    board = (
        await gateway.post("/api/boards", json={"name": "Launch"}, headers=alice.headers)
    ).json()
    added = await gateway.put(
        f"/api/boards/{board['id']}/members/{bob.id}",
        json={"role": "editor"},
        headers=alice.headers,
    )
    assert added.status_code == 200
    channel = f"board:{board['id']}"
    ws_url = (
        base_url.replace("http://", "ws://") + f"/realtime/ws?ticket={await ticket(gateway, bob)}"
    )

    async with (
        sse(base_url, {"channels": channel, "ticket": await ticket(gateway, alice)}) as stream,
        connect(ws_url, origin=base_url) as ws,  # type: ignore[arg-type]
    ):
        await stream.until("ready")
        await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        subscribed = json.loads(await ws.recv())
        assert (subscribed["type"], subscribed["channel"]) == ("subscribed", channel)

        created = (
            await gateway.post(
                f"/api/boards/{board['id']}/tasks", json={"title": "Ship"}, headers=bob.headers
            )
        ).json()
        # SSE is not buffered by nginx: the event arrives while the stream stays open.
        first = await stream.next(timeout=2)
        assert first.event == "task.created"
        assert first.data["data"]["id"] == created["id"]

        task_url = f"/api/tasks/{created['id']}"
        updated = await gateway.patch(
            task_url, json={"title": "Ship it"}, headers={**alice.headers, "If-Match": '"1"'}
        )
        assert updated.status_code == 200
        moved = await gateway.patch(task_url, json={"status": "done"}, headers=bob.headers)
        assert moved.json()["version"] == 3
        assert (await gateway.delete(task_url, headers=alice.headers)).status_code == 204

        sse_events = [first] + [await stream.next() for _ in range(3)]
        ws_events = [await next_event(ws) for _ in range(4)]
    expected = ["task.created", "task.updated", "task.updated", "task.deleted"]
    assert [e.event for e in sse_events] == expected
    assert [e["event"] for e in ws_events] == expected
    assert [e.id for e in sse_events] == [e["id"] for e in ws_events]
    assert ws_events[0]["id"] > subscribed["last_event_id"]

    # Refresh the token, then reconnect with Last-Event-ID while writes go on.
    refreshed = await gateway.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": alice.tokens["refresh_token"]},
    )
    assert refreshed.status_code == 200
    alice.tokens = refreshed.json()
    last_id = sse_events[-1].id
    assert last_id is not None

    async def write(count: int) -> list[str]:
        ids = []
        for i in range(count):
            response = await gateway.post(
                f"/api/boards/{board['id']}/tasks", json={"title": f"w{i}"}, headers=alice.headers
            )
            ids.append(response.json()["id"])
        return ids

    written_before = await write(5)
    writing = asyncio.create_task(write(10))
    headers = {"Last-Event-ID": str(last_id)}
    params = {"channels": channel, "ticket": await ticket(gateway, alice)}
    async with sse(base_url, params, headers) as stream:
        written = written_before + await writing
        received = []
        while len(received) < len(written):
            message = await stream.next()
            if message.event == "task.created":
                received.append(message.data["data"]["id"])
    assert received == written


async def test_request_ids_are_echoed_or_generated(gateway: httpx.AsyncClient) -> None:
    echoed = await gateway.get("/auth/.well-known/jwks.json", headers={"X-Request-ID": "trace-42"})
    assert echoed.headers["x-request-id"] == "trace-42"
    generated = await gateway.get(
        "/auth/.well-known/jwks.json", headers={"X-Request-ID": "bad id with spaces"}
    )
    assert generated.headers["x-request-id"] not in ("", "bad id with spaces")
    missing = await gateway.get("/api/boards")
    assert missing.status_code == 401
    assert len(missing.headers["x-request-id"]) >= 16


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/nothing"])
async def test_internal_paths_are_closed(gateway: httpx.AsyncClient, path: str) -> None:
    response = await gateway.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.compose
@pytest.mark.parametrize("service", ["auth", "api", "realtime"])
async def test_docs_and_openapi_load_through_the_gateway(
    gateway: httpx.AsyncClient, service: str
) -> None:
    docs = await gateway.get(f"/{service}/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    openapi = await gateway.get(f"/{service}/openapi.json")
    assert openapi.json()["info"]["title"] == f"{service}-service"


async def test_security_headers(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/auth/.well-known/jwks.json")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "server" not in response.headers or "nginx/" not in response.headers["server"]


async def test_oversized_bodies_are_refused(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/api/boards", content=b"x" * (2 * 1024 * 1024))
    assert response.status_code == 413


async def test_stopping_a_realtime_replica_mid_stream_loses_nothing(
    gateway: httpx.AsyncClient, base_url: str, stack: NativeStack | None
) -> None:
    if stack is None:
        pytest.skip("needs the native stack: it stops one of its realtime processes")
    alice = await sign_up(gateway)
    board = (await gateway.post("/api/boards", json={"name": "HA"}, headers=alice.headers)).json()
    channel = f"board:{board['id']}"

    async def write(count: int) -> list[str]:
        ids = []
        for i in range(count):
            response = await gateway.post(
                f"/api/boards/{board['id']}/tasks", json={"title": f"h{i}"}, headers=alice.headers
            )
            ids.append(response.json()["id"])
            await asyncio.sleep(0.02)
        return ids

    # nginx spreads the two streams over the two replicas; one of them is about to stop.
    async with (
        sse(base_url, {"channels": channel}, alice.headers) as one,
        sse(base_url, {"channels": channel}, alice.headers) as two,
    ):
        await one.until("ready")
        await two.until("ready")
        writing = asyncio.create_task(write(20))
        await asyncio.sleep(0.1)
        stack.process("realtime-1").send_signal(signal.SIGTERM)
        streams = {"one": one, "two": two}
        received: dict[str, list[str]] = {"one": [], "two": []}
        last_ids: dict[str, int] = {}
        ended: list[str] = []
        for name, stream in streams.items():
            while len(received[name]) < 20:
                message = await stream.next()
                if message.event == "disconnect":
                    assert message.data["code"] == 1012
                    ended.append(name)
                    break
                if message.event != "task.created":
                    # The board's own event: the sequencer logs it shortly after the write
                    # returns, so it can arrive live.
                    continue
                received[name].append(message.data["data"]["id"])
                assert message.id is not None
                last_ids[name] = message.id
        written = await writing
    assert len(ended) == 1, "exactly one stream was on the stopped replica"
    name = ended[0]
    # From the last id received; from the board's start if none was (it is a new board).
    headers = {**alice.headers, "Last-Event-ID": str(last_ids.get(name, 0))}
    async with sse(base_url, {"channels": channel}, headers) as resumed:
        while len(received[name]) < len(written):
            message = await resumed.next()
            if message.event == "task.created":
                received[name].append(message.data["data"]["id"])
    assert received["one"] == written
    assert received["two"] == written


async def test_login_flood_is_rate_limited_with_a_json_429(gateway: httpx.AsyncClient) -> None:
    # Another email each time, so that auth's per-account throttling cannot answer first.
    forms = [
        {"grant_type": "password", "username": f"nobody-{i}@example.com", "password": "wrong pass"}
        for i in range(40)
    ]
    responses = await asyncio.gather(*(gateway.post("/auth/token", data=form) for form in forms))
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    assert limited[0].json() == {
        "error": "rate_limited",
        "detail": "Too many requests: retry later",
    }
    assert limited[0].headers["retry-after"] == "1"
    assert limited[0].headers["x-request-id"]
    await asyncio.sleep(0.5)  # let the bucket refill (at the test stack's rate) for later tests


@pytest.mark.compose
@pytest.mark.parametrize("size", [9000, 1 << 20, 17 << 20])
async def test_an_oversized_websocket_frame_of_any_size_is_closed_1009(
    gateway: httpx.AsyncClient, base_url: str, size: int
) -> None:
    # realtime refuses the frame at its header; the client learns why only if neither
    # realtime nor nginx resets the connection while the rest of the frame is still arriving.
    user = await sign_up(gateway)
    ws_url = base_url.replace("http://", "ws://") + "/realtime/ws"
    url = f"{ws_url}?ticket={await ticket(gateway, user)}"
    code, reason = await close_after_oversized_frame(url, origin=base_url, size=size)
    assert code == 1009, (code, reason)
    assert "exceeds limit of 8192 bytes" in reason
