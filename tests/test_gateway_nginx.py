"""The gateway template in a real nginx, in front of stand-in upstreams: what every location
forwards, and the errors nginx answers itself. Natively, whatever E2E_BASE_URL says: these
need upstreams that misbehave on purpose."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import connect

from devstack.launcher import (
    TEMPLATE,
    StackConfig,
    link_web_root,
    nginx_binary,
    nginx_directives,
    render_template,
)
from devstack.testing import free_port

FORWARDED = ("host", "x-forwarded-for", "x-forwarded-proto", "x-request-id")
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


async def echo_headers(scope: Scope, receive: Receive, send: Send) -> None:
    """An upstream that answers with the request headers it received, as JSON (over HTTP, or
    as the first WebSocket message)."""
    body = json.dumps({k.decode(): v.decode() for k, v in scope["headers"]}).encode()
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": body.decode()})
        await send({"type": "websocket.close"})
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def echo_upstream() -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        echo_headers,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    for _ in range(100):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        await serving


@asynccontextmanager
async def silent_upstream() -> AsyncIterator[int]:
    """Accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


@asynccontextmanager
async def nginx(
    run_dir: Path, auth: int, api: int, realtime: int, edit: Callable[[str], str] = str
) -> AsyncIterator[str]:
    """nginx as the launcher runs it, its template rendered (then changed by `edit`), on a
    free port."""
    config = StackConfig(
        gateway_port=free_port(),
        status_port=free_port(),
        auth_port=auth,
        api_port=api,
        realtime_ports=[realtime],
        run_dir=run_dir,
    )
    link_web_root(config.web_root)
    conf = run_dir / "nginx.conf"
    conf.write_text(edit(render_template(TEMPLATE.read_text(), config.nginx_variables())))
    # The launcher's directives too: its workers must read the web root in a private tmp_path.
    process = await asyncio.create_subprocess_exec(
        nginx_binary(), "-c", str(conf), "-g", nginx_directives()
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    await client.get(f"{config.gateway_url}/")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield config.gateway_url
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


@pytest.fixture(scope="module")
async def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with (
        echo_upstream() as port,
        nginx(tmp_path_factory.mktemp("nginx"), port, port, port) as url,
    ):
        yield url


@pytest.mark.parametrize(
    "path",
    [
        "/auth/x",
        "/auth/token",
        "/auth/register",
        "/api/x",
        "/realtime/x",
        "/realtime/sse",
        "/realtime/ws",
    ],
)
async def test_every_location_forwards_host_client_scheme_and_request_id(
    gateway_url: str, path: str
) -> None:
    request_id = f"trace-{path.replace('/', '-')}"
    async with httpx.AsyncClient() as client:
        reference = (
            await client.post(f"{gateway_url}/api/x", headers={"X-Request-ID": request_id})
        ).json()
        if path == "/realtime/ws":
            ws_url = gateway_url.replace("http://", "ws://") + path
            async with connect(ws_url, additional_headers={"X-Request-ID": request_id}) as ws:
                seen = json.loads(await ws.recv())
            assert seen["upgrade"] == "websocket"
        else:
            response = await client.post(gateway_url + path, headers={"X-Request-ID": request_id})
            assert response.status_code == 200, response.text
            seen = response.json()
    assert reference["host"] == "127.0.0.1"
    assert reference["x-forwarded-for"] == "127.0.0.1"
    assert reference["x-forwarded-proto"] == "http"
    assert reference["x-request-id"] == request_id
    assert {name: seen.get(name) for name in FORWARDED} == {
        name: reference[name] for name in FORWARDED
    }


async def test_upgrade_is_forwarded_to_the_websocket_endpoint_only(gateway_url: str) -> None:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
    async with httpx.AsyncClient() as client:
        seen = (await client.get(f"{gateway_url}/api/x", headers=headers)).json()
    assert "upgrade" not in seen


def assert_gateway_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["detail"], str)
    assert body["detail"]
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-request-id"]


async def raw_request(url: str, request: bytes) -> httpx.Response:
    """What nginx answers to bytes no HTTP client would send, parsed as a response."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in header_lines]
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body)


async def test_nginx_answers_its_own_errors_in_json_with_the_security_headers(
    gateway_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        for path in ("/nothing", "/metrics", "/web/missing.js"):
            assert_gateway_error(await client.get(path), 404, "not_found")
        not_allowed = await client.post("/")
        assert_gateway_error(not_allowed, 405, "method_not_allowed")
        assert not_allowed.headers["allow"] == "GET, HEAD"
        # nginx refuses TRACE before any location: the same page, `Allow` included.
        trace = await client.request("TRACE", "/api/x")
        assert_gateway_error(trace, 405, "method_not_allowed")
        assert trace.headers["allow"] == "GET, HEAD"
        too_large = await client.post("/api/x", content=b"x" * (2 * 1024 * 1024))
        assert_gateway_error(too_large, 413, "request_entity_too_large")
        too_long = await client.get("/api/" + "x" * 20_000)
        assert_gateway_error(too_long, 414, "request_uri_too_long")
        for limited_path in (
            "/auth/register",
            "/auth/password/forgot",
            "/auth/email/verify-request",
        ):
            flood = await asyncio.gather(
                *(client.post(limited_path, content=b"{}") for _ in range(20))
            )
            limited = [response for response in flood if response.status_code == 429]
            assert limited, (limited_path, [response.status_code for response in flood])
            assert_gateway_error(limited[0], 429, "rate_limited")
            assert limited[0].headers["retry-after"] == "1"
        # The services' own answers pass through untouched, without the gateway's headers.
        passed = await client.get("/api/x")
        assert "allow" not in passed.headers
        assert "retry-after" not in passed.headers
    bad_host = await raw_request(gateway_url, b"GET /api/x HTTP/1.1\r\nHost: bad/host\r\n\r\n")
    assert_gateway_error(bad_host, 400, "bad_request")


async def test_unreachable_and_silent_upstreams_are_json_502_and_504(tmp_path: Path) -> None:
    def impatient_api(config: str) -> str:
        # The template waits for the services as long as they need; here one second will do.
        return config.replace("location /api/ {", "location /api/ {\n proxy_read_timeout 1s;")

    closed = free_port()
    async with (
        silent_upstream() as silent,
        echo_upstream() as echo,
        nginx(tmp_path, closed, silent, echo, impatient_api) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        assert_gateway_error(await client.get("/auth/x"), 502, "bad_gateway")
        assert_gateway_error(await client.get("/api/x"), 504, "gateway_timeout")


async def realtime_failures_logged(run_dir: Path, edit: Callable[[str], str] = str) -> str:
    """What nginx's logs hold after /realtime/ requests with a ticket in the query fail in
    every way nginx logs: an upstream that refuses connections, a URI too long, TRACE."""
    await asyncio.to_thread(run_dir.mkdir)
    closed = free_port()
    async with (
        echo_upstream() as echo,
        nginx(run_dir, echo, echo, closed, edit) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        for path in ("/realtime/sse", "/realtime/ws", "/realtime/tickets"):
            failed = await client.get(path, params={"ticket": "SECRET-TICKET"})
            assert failed.status_code == 502, failed.text
        too_long = await client.get("/realtime/sse", params={"ticket": "SECRET-TICKET" * 2000})
        assert too_long.status_code == 414
        trace = await client.request("TRACE", "/realtime/sse", params={"ticket": "SECRET-TICKET"})
        assert trace.status_code == 405
    return await asyncio.to_thread(read_logs, run_dir)


def read_logs(run_dir: Path) -> str:
    return "".join(path.read_text() for path in sorted(run_dir.glob("nginx-*.log")))


async def test_no_nginx_log_holds_a_realtime_query_string(tmp_path: Path) -> None:
    logs = await realtime_failures_logged(tmp_path / "template")
    # The access log names each request as the client sent it, error pages or not.
    assert logs.count('"method":"GET","path":"/realtime/sse","status":502') == 1, logs
    assert '"method":"GET","path":"/realtime/ws","status":502' in logs
    assert '"method":"TRACE","path":"/realtime/sse","status":405' in logs
    assert "SECRET-TICKET" not in logs
    # Without the template's `error_log ... emerg` under /realtime/, the same failures write
    # the query string: this check would see a leak.
    leaky = await realtime_failures_logged(
        tmp_path / "leaky", lambda config: config.replace(" emerg;", " warn;")
    )
    assert "SECRET-TICKET" in leaky
