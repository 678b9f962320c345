"""End-to-end tests: through the nginx gateway only. They start the native stack with the
launcher (two realtime replicas, a fresh database), or use a running stack at E2E_BASE_URL."""

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import httpx
import pytest

from devstack.launcher import NativeStack, StackConfig
from devstack.pgcluster import own_cluster
from devstack.testing import SseStream, free_port, fresh_database
from servicekit.db import asyncpg_dsn

ROOT = Path(__file__).parents[1]

PASSWORD = "e2e password 1"
# The gateway's limits in the test stacks: sign-ups and logins are not paced, but a flood
# beyond the burst is still refused. The production rates: tests/test_gateway_nginx.py.
TEST_RATE_LIMITS = {"token_rate": "50r/s", "register_rate": "50r/s", "mail_rate": "50r/s"}
SESSION_STARTED = time.time()


class SecretsSeen:
    """Every password, token and ticket that went through a gateway client of this test run,
    so that the last test can check that no log line holds one (test_logs_hold_no_secrets)."""

    _SECRET_FIELDS = (
        "password",
        "current_password",
        "refresh_token",
        "access_token",
        "ticket",
        "token",  # one-time tokens: email verification, password reset
        "code",  # one-time sign-in codes (an OpenID provider's sign-in)
        "challenge",  # WebAuthn challenges (passkeys)
    )
    _AUTH_PATHS = (
        "/auth/token",
        "/auth/register",
        "/auth/users/me",
        "/auth/logout",
        "/auth/email/verify",
        "/auth/password/reset",
    )
    _ISSUING_PATHS = (
        "/auth/token",
        "/realtime/tickets",
        "/auth/passkeys/register/options",
        "/auth/passkeys/sign-in/options",
        "/auth/passkeys/sign-in",
    )

    def __init__(self) -> None:
        self.values: set[str] = {PASSWORD}

    def _take(self, document: object) -> None:
        if isinstance(document, dict):
            for name in self._SECRET_FIELDS:
                value = document.get(name)
                if isinstance(value, str) and len(value) >= 8:
                    self.values.add(value)

    async def on_request(self, request: httpx.Request) -> None:
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            self.values.add(authorization[7:].strip())
        if request.url.path in self._AUTH_PATHS and request.content:
            body = request.content.decode(errors="replace")
            if request.headers.get("content-type", "").startswith("application/json"):
                with suppress(ValueError):
                    self._take(json.loads(body))
            else:
                self._take(dict(parse_qsl(body)))

    async def on_response(self, response: httpx.Response) -> None:
        if response.request.url.path in self._ISSUING_PATHS and response.is_success:
            await response.aread()
            self._take(response.json())
        if response.request.url.path.startswith("/auth/oidc/"):
            await response.aread()
            self.take_oidc(response.request.url, response)

    def take_oidc(self, url: httpx.URL | str, response: httpx.Response | None = None) -> None:
        """The secrets of a sign-in through an OpenID provider: the provider's code and our
        state in the callback's query, state and nonce in the authorization URL we answer,
        the one-time sign-in code in the fragment we redirect to."""
        self.take_url(url)
        if response is None:
            return
        if response.headers.get("content-type", "").startswith("application/json"):
            with suppress(ValueError):
                body = response.json()
                if isinstance(body, dict) and isinstance(body.get("authorization_url"), str):
                    self.take_url(body["authorization_url"])
        self.take_url(response.headers.get("location", ""))

    _URL_SECRETS = ("state", "nonce", "code", "sign-in")

    def take_url(self, url: httpx.URL | str) -> None:
        """The secrets in a URL's query and fragment (`a=b&c=d`)."""
        parsed = httpx.URL(str(url))
        for part in (parsed.query.decode(), parsed.fragment):
            for name, value in parse_qsl(part):
                if name in self._URL_SECRETS and len(value) >= 8:
                    self.values.add(value)


SECRETS_SEEN = SecretsSeen()
# Query strings that carry secrets: realtime's tickets, an OpenID provider's code and our state.
# (A service logs the decoded path, which may hold a `?` of its own: /auth/oidc/%3F/start.)
_SECRET_QUERY = re.compile(r"/realtime/[^\s\"?]*\?|/auth/oidc/[^\s\"?]*\?[^\s\"]*(code|state)=")


def log_leaks(logs: list[Path], secrets: set[str]) -> list[str]:
    """Each log line that holds one of `secrets` or the query string of a /realtime/ or
    /auth/oidc/ URL."""
    any_secret = re.compile("|".join(re.escape(secret) for secret in secrets))
    leaks = []
    for path in logs:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any_secret.search(line) or _SECRET_QUERY.search(line):
                leaks.append(f"{path.relative_to(ROOT)}:{number}: {line[:300]}")
    return leaks


async def stored_secrets(database_url: str) -> set[str]:
    """Password hashes (an account made through an OpenID provider has none), and the hex of
    refresh-token hashes, as a log would show them."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        hashes = await connection.fetch(
            "SELECT password_hash FROM auth.users WHERE password_hash IS NOT NULL"
        )
        tokens = await connection.fetch(
            "SELECT encode(token_hash, 'hex') AS hex FROM auth.refresh_tokens"
        )
    finally:
        await connection.close()
    return {row["password_hash"] for row in hashes} | {row["hex"] for row in tokens}


def gateway_client(base_url: str) -> httpx.AsyncClient:
    """An HTTP client for the gateway that records the secrets it carries."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=15,
        event_hooks={"request": [SECRETS_SEEN.on_request], "response": [SECRETS_SEEN.on_response]},
    )


CLIENT_TESTS = ROOT / "tests" / "clients"
# The client stacks (tests/clients/conftest.py), in the order their tests run.
CLIENT_STACK_FIXTURES = ("client_stack", "tiny_queue_stack", "short_token_stack")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The log check runs last of the tests on the session stack: it reads what they made the
    stacks of this process write. The clients' tests run after them, grouped by the client
    stack they use (one runs at a time, each checking its own logs as it stops): by then the
    stacks of single modules are gone, so the run never holds more connections than the
    shared PostgreSQL allows."""
    items.sort(
        key=lambda item: (
            item.path.is_relative_to(CLIENT_TESTS),
            item.path.name == "test_logs_hold_no_secrets.py",
            client_stack_order(item),
        )
    )


def client_stack_order(item: pytest.Item) -> int:
    """Where a client test runs: grouped by the client stack it uses, each started once."""
    used = getattr(item, "fixturenames", ())
    return next((n for n, name in enumerate(CLIENT_STACK_FIXTURES) if name in used), 0)


def native_only(reason: str) -> pytest.MarkDecorator:
    """For tests that start, stop or watch a native stack of their own: with E2E_BASE_URL set
    (e.g. the compose stack, `make compose-test`) they skip, saying why."""
    return pytest.mark.skipif(
        bool(os.environ.get("E2E_BASE_URL")), reason=f"needs the native stack: {reason}"
    )


class StackDatabaseServer:
    """The PostgreSQL the end-to-end stacks run on: a cluster of this test process's own,
    started with the first stack and removed at the end of the session. Each stack's six
    processes hold a few connections each; on the server at TEST_DATABASE_URL (100
    connections here) they and the fast tier, run beside them by the other pytest-xdist
    worker, do not fit."""

    def __init__(self) -> None:
        self._clusters = ExitStack()
        self._admin_url: str | None = None

    async def admin_url(self) -> str:
        if self._admin_url is None:
            cluster = await asyncio.to_thread(self._clusters.enter_context, own_cluster())
            await cluster.start()
            self._admin_url = cluster.admin_url
        return self._admin_url

    def close(self) -> None:
        self._clusters.close()


STACK_DATABASE_SERVER = StackDatabaseServer()


def pytest_sessionfinish() -> None:
    STACK_DATABASE_SERVER.close()


def stack_config(
    name: str, database_url: str, service_env: dict[str, str] | None = None, **settings: Any
) -> StackConfig:
    """The launcher's stack on free ports, two realtime replicas, the test settings;
    `service_env` adds settings to every service's environment."""
    ports = {
        "gateway_port": free_port(),
        "status_port": free_port(),
        "auth_port": free_port(),
        "api_port": free_port(),
        "realtime_ports": [free_port(), free_port()],
    }
    return StackConfig(
        database_url=database_url,
        run_dir=ROOT / "var" / f"{name}-{uuid.uuid4().hex[:6]}",
        # INFO: the log check must see every line a request can make a service write.
        # Small pools: several test stacks share one PostgreSQL.
        extra_env={"LOG_LEVEL": "INFO", "DB_POOL_SIZE": "3", **(service_env or {})},
        # `settings` may name a port (a gateway URL an OpenID provider knows beforehand).
        **{**ports, **TEST_RATE_LIMITS, **settings},
    )


@asynccontextmanager
async def running(config: StackConfig) -> AsyncIterator[NativeStack]:
    native = NativeStack(config)
    try:
        await native.start()
        yield native
    finally:
        native.stop()


@asynccontextmanager
async def native_stack(
    name: str, service_env: dict[str, str] | None = None, **settings: Any
) -> AsyncIterator[NativeStack]:
    """`stack_config`'s stack on a fresh database of the end-to-end stacks' own server."""
    server = await STACK_DATABASE_SERVER.admin_url()
    async with (
        fresh_database(name, [], server) as url,
        running(stack_config(name, url, service_env, **settings)) as native,
    ):
        yield native


async def node_stream(
    client: httpx.AsyncClient, node: str, channel: str, headers: dict[str, str]
) -> SseStream:
    """An SSE stream of `channel` straight from one realtime replica, once it is ready."""
    request = client.build_request(
        "GET", f"{node}/realtime/sse", params={"channels": channel}, headers=headers
    )
    response = await client.send(request, stream=True)
    assert response.status_code == 200
    stream = SseStream(response)
    await stream.until("ready")
    return stream


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[NativeStack | None]:
    if os.environ.get("E2E_BASE_URL"):
        yield None
        return
    async with native_stack("e2e") as native:
        yield native


@pytest.fixture(scope="session")
def base_url(stack: NativeStack | None) -> str:
    if stack is None:
        return os.environ["E2E_BASE_URL"].rstrip("/")
    return stack.config.gateway_url


@pytest.fixture
async def gateway(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(base_url) as client:
        yield client


@pytest.fixture(scope="session")
def mail_url(stack: NativeStack | None) -> str:
    """The web view of the mail catcher auth-service sends to: the native stack's own, or the
    one E2E_MAIL_URL names (`make compose-test` sets it to compose's `mailcatcher`)."""
    if stack is not None:
        assert stack.mail_viewer_url is not None, "the test stack runs with a mail catcher"
        return stack.mail_viewer_url
    url = os.environ.get("E2E_MAIL_URL", "")
    if not url:
        pytest.skip("reads the stack's mail: E2E_MAIL_URL names no mail catcher for E2E_BASE_URL")
    return url.rstrip("/")


async def mailed_link(mail_url: str, address: str, kind: str, timeout: float = 15.0) -> str:
    """The link of `kind` (verify-email, reset-password) in the newest message to `address`,
    from the mail catcher's JSON listing, once it has arrived."""
    pattern = re.compile(rf"https?://\S+/#{kind}=([\w-]+)")
    async with httpx.AsyncClient(timeout=5) as client, asyncio.timeout(timeout):
        while True:
            messages = (await client.get(f"{mail_url}/messages.json")).json()
            for message in messages:  # newest first
                found = pattern.search(message["text"]) if address in message["to"] else None
                if found:
                    # A one-time token: the log check must look for it too.
                    SECRETS_SEEN.values.add(found.group(1))
                    return found.group()
            await asyncio.sleep(0.2)


class User:
    def __init__(self, user_id: str, email: str, tokens: dict[str, str]) -> None:
        self.id, self.email, self.tokens = user_id, email, tokens

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


async def sign_up(gateway: httpx.AsyncClient) -> User:
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    registered = await gateway.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    token = await gateway.post(
        "/auth/token", data={"grant_type": "password", "username": email, "password": PASSWORD}
    )
    assert token.status_code == 200, token.text
    return User(registered.json()["id"], email, token.json())
