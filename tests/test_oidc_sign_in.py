"""Sign-in through an OpenID provider, end to end: panva's oidc-provider (a certified
implementation, tests/oidc_provider) on a free port, the native stack through its gateway, and
the demo page in Chromium. The ID-token attacks are in auth-service/tests/test_oidc.py.

Against the compose stack (`make compose-test`, E2E_BASE_URL) the tests still start the
provider, beside the stack on this machine, on the port E2E_OIDC_PORT that deploy/compose/test.sh
chose and configured auth with (deploy/compose/test-oidc.yml), with the client secret it wrote
(E2E_OIDC_CLIENT_SECRET_FILE), also listening on the Docker bridge's address
(E2E_OIDC_ALSO_LISTEN_ON) for auth's relay."""

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, Request, Response, expect

from devstack.testing import free_port, node_oidc_provider, query_of, through_provider_pages
from stack_client import AsyncStackClient, StackError

from .conftest import (
    PASSWORD,
    ROOT,
    SECRETS_SEEN,
    gateway_client,
    native_stack,
    sign_up,
)
from .test_demo_page import browser  # noqa: F401 (the module's Chromium)

# deploy/compose/test-oidc.yml configures the compose stack's auth with the same client.
CLIENT_ID = "stack-e2e"
CLIENT_SECRET = "e2e-client-secret-0c41d7a2"
SCRIPT = ROOT / "tests" / "oidc_provider" / "provider.js"


class OidcStack:
    def __init__(self, base_url: str, issuer: str) -> None:
        self.base_url, self.issuer = base_url, issuer
        self.redirect_uri = f"{self.base_url}/auth/oidc/test/callback"


@pytest.fixture(scope="module")
def client_secret() -> str:
    """The test client's secret: for the stack at E2E_BASE_URL the one its auth was given
    (E2E_OIDC_CLIENT_SECRET_FILE), else the module's."""
    given = os.environ.get("E2E_OIDC_CLIENT_SECRET_FILE") if os.environ.get("E2E_BASE_URL") else ""
    secret = Path(given).read_text().strip() if given else CLIENT_SECRET
    SECRETS_SEEN.values.add(secret)
    return secret


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory, client_secret: str) -> Path:
    """The client secret as the native auth-service reads it (OIDC_PROVIDERS'
    client_secret_file)."""
    path = tmp_path_factory.mktemp("oidc") / "client-secret"
    path.write_text(client_secret)
    return path


@pytest.fixture(scope="module")
async def oidc_stack(secret_file: Path, client_secret: str) -> AsyncIterator[OidcStack]:
    """The native stack with the provider started first, or the stack at E2E_BASE_URL with
    the provider its auth was configured with (the module docstring)."""
    base_url = os.environ.get("E2E_BASE_URL", "").rstrip("/")
    if base_url:
        async with compose_provider(base_url, client_secret) as issuer:
            yield OidcStack(base_url, issuer)
        return
    gateway_port = free_port()
    redirect_uri = f"http://127.0.0.1:{gateway_port}/auth/oidc/test/callback"
    async with node_oidc_provider(
        SCRIPT, client_id=CLIENT_ID, client_secret=client_secret, redirect_uris=[redirect_uri]
    ) as issuer:
        providers = [
            {
                "name": "test",
                "display_name": "Test ID",
                "issuer": issuer,
                "client_id": CLIENT_ID,
                "client_secret_file": str(secret_file),
            },
            # Nothing listens there.
            {
                "name": "down",
                "display_name": "Down ID",
                "issuer": f"http://127.0.0.1:{free_port()}",
                "client_id": CLIENT_ID,
            },
        ]
        async with native_stack(
            "oidc", {"OIDC_PROVIDERS": json.dumps(providers)}, gateway_port=gateway_port
        ) as native:
            yield OidcStack(native.config.gateway_url, issuer)


@asynccontextmanager
async def compose_provider(base_url: str, secret: str) -> AsyncIterator[str]:
    """The provider the stack at `base_url` was configured with (E2E_OIDC_*), started."""
    port = os.environ.get("E2E_OIDC_PORT")
    if not port:
        pytest.skip("E2E_OIDC_PORT names no provider the stack at E2E_BASE_URL knows")
    also = os.environ.get("E2E_OIDC_ALSO_LISTEN_ON", "")
    async with node_oidc_provider(
        SCRIPT,
        client_id=CLIENT_ID,
        client_secret=secret,
        redirect_uris=[f"{base_url}/auth/oidc/test/callback"],
        port=int(port),
        also_listen_on=[address for address in also.split(",") if address],
    ) as issuer:
        yield issuer


@pytest.fixture
async def gateway(oidc_stack: OidcStack) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(oidc_stack.base_url) as client:
        yield client


def record_secrets(page: Page) -> None:
    """What the browser carries through a sign-in (state, nonce, the provider's code, our
    one-time code), for the log check (test_logs_hold_no_secrets)."""

    def on_request(request: Request) -> None:
        SECRETS_SEEN.take_url(request.url)
        if request.url.endswith("/auth/token") and request.post_data:
            SECRETS_SEEN.take_url("?" + request.post_data)

    def on_response(response: Response) -> None:
        SECRETS_SEEN.take_url(response.headers.get("location", ""))

    page.on("request", on_request)
    page.on("response", on_response)


async def at_the_provider(page: Page, issuer: str, login: str) -> None:
    """The provider's own login page (any password), then its consent page."""
    await page.wait_for_url(f"{issuer}/**")
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", "any password at the provider")
    await page.click("button[type=submit]")
    await page.click("button:has-text('Continue')")


@pytest.mark.compose
async def test_sign_in_with_the_provider_from_the_demo_page(
    browser: Browser,  # noqa: F811
    oidc_stack: OidcStack,
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    record_secrets(page)
    try:
        await page.goto(oidc_stack.base_url + "/")
        await page.click("#providers button:has-text('Sign in with Test ID')")
        login = f"browser-{uuid.uuid4().hex[:8]}"
        await at_the_provider(page, oidc_stack.issuer, login)
        # Back at the demo page, signed in; the one-time code has left the address bar.
        await expect(page.locator("#whoami")).to_contain_text(login, timeout=10_000)
        assert "#" not in page.url
        await expect(page.locator("#linked li[data-provider=test]")).to_contain_text("Test ID")
        # An API call with the stack's tokens.
        board = f"OIDC board {uuid.uuid4().hex[:4]}"
        await page.fill("#board-form input[name=name]", board)
        await page.click("#board-form button[type=submit]")
        await expect(page.locator("#board-name")).to_have_text(board)
        # The only way to sign in cannot be unlinked: the page says why.
        await page.click("#account summary")
        await page.click("#linked li[data-provider=test] button:has-text('Unlink')")
        await expect(page.locator("#error")).to_contain_text("only way to sign in")
    finally:
        await context.close()


@pytest.mark.compose
async def test_link_the_provider_from_the_account_panel(
    browser: Browser,  # noqa: F811
    oidc_stack: OidcStack,
    gateway: httpx.AsyncClient,
) -> None:
    user = await sign_up(gateway)
    context = await browser.new_context()
    page = await context.new_page()
    record_secrets(page)
    try:
        await page.goto(oidc_stack.base_url + "/")
        await page.fill("input[name=email]", user.email)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[value=login]")
        await page.click("#account summary")
        await page.click("#link-buttons button:has-text('Link Test ID')")
        await at_the_provider(page, oidc_stack.issuer, f"linker-{uuid.uuid4().hex[:8]}")
        await expect(page.locator("#notice")).to_have_text("Test ID is linked to your account.")
        # The header names the user; its title is their email (deploy/web/app.js).
        await expect(page.locator("#whoami")).to_have_attribute("title", user.email)
        await page.click("#account summary")
        linked = page.locator("#linked li[data-provider=test]")
        await expect(linked).to_be_visible()
        # With a password left, unlinking is allowed.
        await linked.locator("button:has-text('Unlink')").click()
        await expect(linked).to_have_count(0)
        await expect(page.locator("#link-buttons button")).to_have_text(
            ["Link Test ID", "Link Down ID"]
        )
    finally:
        await context.close()


@pytest.mark.compose
async def test_refused_flows_through_the_gateway_are_json_errors(
    oidc_stack: OidcStack, gateway: httpx.AsyncClient
) -> None:
    providers = await gateway.get("/auth/oidc/providers")
    assert [p["name"] for p in providers.json()] == ["test", "down"]
    # The provider unreachable: 503 with Retry-After, through nginx.
    down = await gateway.post("/auth/oidc/down/start")
    assert down.status_code == 503, down.text
    assert down.json()["error"] == "provider_unavailable"
    assert int(down.headers["retry-after"]) > 0
    # A sign-in through the provider, then its callback replayed and its state changed.
    start = await gateway.post("/auth/oidc/test/start")
    back = await through_provider_pages(
        start.json()["authorization_url"], f"e2e-{uuid.uuid4().hex[:8]}", oidc_stack.redirect_uri
    )
    SECRETS_SEEN.take_url(back)
    path = back.removeprefix(oidc_stack.base_url)
    first = await gateway.get(path)
    assert first.status_code == 303
    assert first.headers["location"].startswith(f"{oidc_stack.base_url}/#sign-in=")
    for replay in (path, path.replace(query_of(back)["state"], uuid.uuid4().hex)):
        refused = await gateway.get(replay)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "sign_in_failed"
        assert "location" not in refused.headers
    # An email-only match where our side is unverified: no session, a 409 saying what to do.
    user = await sign_up(gateway)
    start = await gateway.post("/auth/oidc/test/start")
    back = await through_provider_pages(
        start.json()["authorization_url"], user.email, oidc_stack.redirect_uri
    )
    SECRETS_SEEN.take_url(back)
    conflict = await gateway.get(back.removeprefix(oidc_stack.base_url))
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"] == "account_exists"


async def test_the_python_client_signs_in_links_and_unlinks(
    oidc_stack: OidcStack, gateway: httpx.AsyncClient
) -> None:
    """The Python client's calls; its HTTP client keeps the flow's cookie as a browser would."""
    async with AsyncStackClient(oidc_stack.base_url, http=gateway) as client:
        assert [p["name"] for p in await client.providers()] == ["test", "down"]
        login = f"python-{uuid.uuid4().hex[:8]}"
        url = await client.start_provider_sign_in("test")
        back = await through_provider_pages(url, login, oidc_stack.redirect_uri)
        redirected = await gateway.get(back.removeprefix(oidc_stack.base_url))
        code = redirected.headers["location"].split("#sign-in=", 1)[1]
        me = await client.complete_sign_in(code)
        assert me["display_name"] == login
        assert [p["provider"] for p in await client.linked_providers()] == ["test"]
        with pytest.raises(StackError) as refused:
            await client.unlink_provider("test")
        assert refused.value.status == 409
        assert refused.value.error == "last_sign_in_method"
        with pytest.raises(StackError) as unavailable:
            await client.link_provider("down")
        assert unavailable.value.status == 503
        assert unavailable.value.retry_after
        await client.logout()
