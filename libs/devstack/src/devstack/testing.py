"""Helpers for the test suites and benchmarks: a fresh, migrated database per test run, free
ports, real service processes, hand-made tokens for attacking verifiers, and waiting for the
event log's sequencer."""

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import asyncpg
import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from eventlog.tables import INBOX, LOG
from servicekit.db import asyncpg_dsn, drop_database, ensure_database
from servicekit.migrations import upgrade

DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    """The server the tests make their databases on: TEST_DATABASE_URL, read when needed (the
    test run may start a throwaway cluster and set it after this module is imported)."""
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


@asynccontextmanager
async def fresh_database(
    prefix: str, migration_dirs: Sequence[Path] = (), server: str | None = None
) -> AsyncIterator[str]:
    """A new database named `test_<prefix>_<random>`, migrated, dropped on exit; on `server`
    (an admin URL), by default the one at TEST_DATABASE_URL."""
    name = f"test_{prefix}_{uuid.uuid4().hex[:8]}"
    url = make_url(server or admin_url()).set(database=name).render_as_string(hide_password=False)
    await ensure_database(url)
    try:
        for directory in migration_dirs:
            await asyncio.to_thread(upgrade, directory, url)
        yield url
    finally:
        await drop_database(url)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


Signer = Callable[[bytes], bytes]


def craft_token(header: Mapping[str, Any], claims: Mapping[str, Any], sign: Signer) -> str:
    """A JWS built by hand, so tests can forge exactly the header and claims an attacker would."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def rs256_signer(private_key_pem: str) -> Signer:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def hs256_signer(secret: bytes) -> Signer:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def rss_bytes(pid: int) -> int:
    """A process's resident memory, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for {pid}")


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
# How many ports below the kernel's ephemeral range free_port picks from.
FREE_PORT_SPAN = 12_000


_HANDED_OUT: set[int] = set()


def _free_port_range() -> tuple[int, int]:
    """The ports `free_port` picks from: [first, last). Each pytest-xdist worker has a slice of
    its own, which the processes it starts share (they inherit its environment), so that two
    workers never hand out one port: CI saw Prometheus fail with "Address already in use" on
    a port the other worker had picked at the same moment."""
    low = int(EPHEMERAL_PORTS.read_text().split()[0]) if EPHEMERAL_PORTS.exists() else 32768
    first = max(1024, low - FREE_PORT_SPAN)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and workers > 1:
        size = (low - first) // workers
        first += int(worker[2:]) * size
        low = first + size
    return first, low


def free_port() -> int:
    """A port nothing listens on, for a server a test starts, picked at random *below* the
    kernel's ephemeral range. A port from that range (what binding port 0 gives) can become the
    local end of any outgoing connection (a test client's, a pool's) before the server binds
    it: CI saw nginx fail with "Address already in use" on such a port. A port is handed out
    once per process, since its server may not have bound it yet when the next is asked for."""
    first, last = _free_port_range()
    for _ in range(200):
        port = first + secrets.randbelow(last - first)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port between {first} and {last - 1}")


def _open_log(app: str, port: int) -> IO[bytes]:
    """Where a server's output goes: a file, not a pipe (nobody reads a pipe while the server
    runs, and a full pipe would block the server on its next log line). Set TEST_LOG_DIR to
    keep the files; the caller closes it."""
    log_dir = os.environ.get("TEST_LOG_DIR")
    if log_dir:
        return (Path(log_dir) / f"{app.split('.')[0]}-{port}.log").open("w+b")
    return tempfile.TemporaryFile()


@dataclass(frozen=True)
class ServiceProcess:
    url: str
    pid: int
    log: IO[bytes]

    def output(self) -> str:
        """Everything the process has written to stdout and stderr so far."""
        size = os.fstat(self.log.fileno()).st_size
        return os.pread(self.log.fileno(), size, 0).decode(errors="replace")


@asynccontextmanager
async def uvicorn_service(
    app: str, env: Mapping[str, str], *, port: int | None = None, ready_path: str = "/readyz"
) -> AsyncIterator[ServiceProcess]:
    """A real uvicorn process serving `app` on 127.0.0.1, once `ready_path` answers 200; it is
    stopped (SIGTERM, then SIGKILL) on exit unless it has already ended."""
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    with _open_log(app, port) as log:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "servicekit.serve", app, "--port", str(port)),
            env={**os.environ, **env},
            stdout=log,
            stderr=log,
        )
        try:
            await _wait_until_ready(process, f"{base_url}{ready_path}", log)
            yield ServiceProcess(base_url, process.pid, log)
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()


@asynccontextmanager
async def uvicorn_process(
    app: str, env: Mapping[str, str], *, port: int | None = None, ready_path: str = "/readyz"
) -> AsyncIterator[str]:
    """`uvicorn_service` for callers that need only its base URL."""
    async with uvicorn_service(app, env, port=port, ready_path=ready_path) as service:
        yield service.url


@asynccontextmanager
async def node_oidc_provider(
    script: Path,
    *,
    client_id: str,
    client_secret: str,
    redirect_uris: Sequence[str],
    port: int | None = None,
    also_listen_on: Sequence[str] = (),
) -> AsyncIterator[str]:
    """A real OpenID provider (panva's oidc-provider, `script` is tests/oidc_provider's
    provider.js) on `port` (a free one by default), with one confidential client; yields its
    issuer, http://127.0.0.1:<port>, once its discovery document answers. It listens on
    127.0.0.1 and on each address of `also_listen_on` (for a compose stack: the Docker
    bridge's, which a relay in the auth container forwards to)."""
    port = port or free_port()
    env = {
        "PORT": str(port),
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": client_secret,
        "REDIRECT_URIS": ",".join(redirect_uris),
        "ALSO_LISTEN_ON": ",".join(also_listen_on),
    }
    with _open_log("oidc-provider", port) as log:
        process = await asyncio.create_subprocess_exec(
            "node", str(script), env={**os.environ, **env}, stdout=log, stderr=log
        )
        issuer = f"http://127.0.0.1:{port}"
        try:
            await _wait_until_ready(process, f"{issuer}/.well-known/openid-configuration", log)
            yield issuer
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()


_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


async def through_provider_pages(authorization_url: str, login: str, redirect_uri: str) -> str:
    """What a browser does at the provider: its login page (any password), then its consent
    page; returns the URL the provider sends the browser back to (the callback's)."""
    async with httpx.AsyncClient(timeout=10) as browser:
        response = await browser.get(authorization_url)
        for _ in range(10):
            location = response.headers.get("location")
            if location is not None:
                url: str = urljoin(str(response.url), location)
                if url.startswith(redirect_uri):
                    return url
                response = await browser.get(url)
                continue
            assert response.status_code == 200, response.text
            found = _FORM_ACTION.search(response.text)
            assert found, response.text
            action = urljoin(str(response.url), found.group(1))
            if 'name="login"' in response.text:
                form = {"prompt": "login", "login": login, "password": "any password"}
            else:
                form = {"prompt": "consent"}
            response = await browser.post(action, data=form)
    raise AssertionError("the provider never redirected back")


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


# Generous: a process that dies is reported at once (its exit is checked on every poll), and on a
# machine shared with other work a healthy start has taken over 15 s.
READY_TIMEOUT_SECONDS = 60.0


async def _wait_until_ready(process: asyncio.subprocess.Process, url: str, log: IO[bytes]) -> None:
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_SECONDS
    async with httpx.AsyncClient() as client:
        while asyncio.get_running_loop().time() < deadline:
            if process.returncode is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")
                raise RuntimeError(f"{url} exited early: {output[-2000:]}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} did not become ready within {READY_TIMEOUT_SECONDS} s")


@asynccontextmanager
async def asgi_client(
    app: FastAPI, base_url: str = "http://test"
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that calls `app` in-process (its lifespan must already be running)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


@dataclass
class SseMessage:
    event: str
    data: Any
    id: int | None


class SseStream:
    """Reads a `text/event-stream` httpx response frame by frame, as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> SseMessage:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> SseMessage:
        event, event_id = "message", None
        data: list[str] = []
        async for line in self._lines:
            if line == "":
                if data:
                    return SseMessage(event, json.loads("\n".join(data)), event_id)
                event, event_id = "message", None
            elif line.startswith(":") or line.startswith("retry:"):
                continue
            else:
                name, _, value = line.partition(": ")
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = int(value)
        raise EOFError("stream ended")

    async def until(self, event: str, timeout: float = 5.0) -> SseMessage:
        while True:
            message = await self.next(timeout)
            if message.event == event:
                return message


class LaggingFinProxy:
    """A TCP proxy to PostgreSQL on 127.0.0.1 that forwards bytes as they come but passes the
    server's end of stream (FIN) on `fin_lag` seconds late, as a network path, a load balancer
    or a pooler in between may. When a backend is terminated, the client reads the server's
    FATAL error (57P01) first and learns that the connection is gone only later: the window in
    which a driver's next statement meets a half-dead connection, reproduced every time."""

    def __init__(self, upstream_host: str, upstream_port: int, fin_lag: float = 0.3) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.fin_lag = fin_lag
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    def dsn(self, dsn: str) -> str:
        """`dsn` (a postgresql:// URL) pointed at the proxy."""
        url = make_url(dsn).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    async def __aenter__(self) -> "LaggingFinProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        for pump in (
            self._pump(reader, up_writer, 0.0),
            self._pump(up_reader, writer, self.fin_lag),
        ):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fin_lag: float
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            await asyncio.sleep(fin_lag)
        except OSError:
            pass
        finally:
            writer.close()


async def close_after_oversized_frame(
    url: str, *, origin: str, size: int, first: str | None = None
) -> tuple[int | None, str]:
    """Sends `first` (if any), then one JSON message of about `size` bytes on a new WebSocket
    at `url`; returns the close code and reason the server's close frame carried, or
    (None, "") when the connection ended without one (a reset)."""
    ws = await connect(url, origin=origin, open_timeout=5, max_size=None, compression=None)  # type: ignore[arg-type]
    try:
        if first is not None:
            await ws.send(first)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps({"type": "ping", "pad": "x" * size}))
            await asyncio.wait_for(ws.recv(), 10)
    finally:
        # websockets' close() fails on a connection the server has already closed.
        if ws.state is not State.CLOSED:
            await ws.close()
    received = ws.protocol.close_rcvd
    return (received.code, received.reason) if received is not None else (None, "")


_INBOX_ROWS = f"SELECT count(*) FROM {INBOX}"
_CHANNEL_EVENTS = f"SELECT type, data FROM {LOG} WHERE channel = $1 ORDER BY id"


async def events_sequenced(database_url: str, timeout: float = 10.0) -> None:
    """Wait until the sequencer has moved every committed event from the inbox into the log:
    a write's events reach the log a few milliseconds after its commit."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while await connection.fetchval(_INBOX_ROWS):
            assert asyncio.get_running_loop().time() < deadline, "the inbox was not emptied"
            await asyncio.sleep(0.01)
    finally:
        await connection.close()


async def channel_events(database_url: str, channel: str) -> list[tuple[str, dict[str, Any]]]:
    """The (type, data) of every event in the log on `channel`, oldest first, once every
    committed event has been sequenced: what a subscriber of the channel would receive."""
    await events_sequenced(database_url)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(_CHANNEL_EVENTS, channel)
    finally:
        await connection.close()
    return [(row["type"], json.loads(row["data"])) for row in rows]
