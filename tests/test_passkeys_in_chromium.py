"""Passkeys through the demo page in Chromium, with the DevTools protocol's virtual
authenticator, through the gateway. The stack's PUBLIC_URL is http://localhost:<port>: WebAuthn
takes no IP address as a relying party. Replayed challenges, other origins and relying parties,
a counter going backwards: auth-service/tests/test_passkeys.py.

Against the compose stack (`make compose-test`) the tests use the stack at E2E_BASE_URL, which
must then be http://localhost:<port> with the stack's PUBLIC_URL the same (deploy/compose/test.sh
starts its first copy so)."""

import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from devstack.testing import free_port
from stack_client import AsyncStackClient, StackError

from .conftest import PASSWORD, gateway_client, native_stack, sign_up
from .test_demo_page import browser  # noqa: F401 (the module's Chromium)


class LocalhostStack:
    """A stack whose PUBLIC_URL is `page_url` (http://localhost:<port>); tests call its
    gateway at `gateway_url` (the same, or 127.0.0.1 on the native stack)."""

    def __init__(self, page_url: str, gateway_url: str) -> None:
        self.page_url, self.gateway_url = page_url, gateway_url


@pytest.fixture(scope="module")
async def localhost_stack() -> AsyncIterator[LocalhostStack]:
    base_url = os.environ.get("E2E_BASE_URL", "").rstrip("/")
    if base_url:
        if urlsplit(base_url).hostname != "localhost":
            pytest.skip("a relying party is a domain: E2E_BASE_URL is not http://localhost:<port>")
        yield LocalhostStack(base_url, base_url)
        return
    port = free_port()
    async with native_stack(
        "passkeys", gateway_port=port, public_url=f"http://localhost:{port}"
    ) as native:
        yield LocalhostStack(f"http://localhost:{port}", native.config.gateway_url)


@pytest.fixture
async def gateway(localhost_stack: LocalhostStack) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(localhost_stack.gateway_url) as client:
        yield client


async def with_authenticator(browser: Browser) -> Page:  # noqa: F811
    """A page whose browser has a platform authenticator that keeps discoverable credentials
    and verifies its user without asking."""
    context = await browser.new_context()
    page = await context.new_page()
    devtools = await context.new_cdp_session(page)
    await devtools.send("WebAuthn.enable")
    await devtools.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return page


@pytest.mark.compose
async def test_register_sign_out_sign_in_with_it_delete_it(
    browser: Browser,  # noqa: F811
    localhost_stack: LocalhostStack,
    gateway: httpx.AsyncClient,
) -> None:
    user = await sign_up(gateway)
    page = await with_authenticator(browser)
    try:
        await page.goto(f"{localhost_stack.page_url}/")
        await page.fill("input[name=email]", user.email)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[value=login]")
        await page.click("#account summary")
        await page.fill("#passkey-form input[name=name]", "laptop")
        await page.click("#passkey-form button[type=submit]")
        passkey = page.locator("#passkeys li", has_text="laptop")
        await expect(passkey).to_be_visible()

        await page.click("#logout")
        await page.click("#passkey-sign-in")
        # The header names the user; its title is their email (deploy/web/app.js).
        await expect(page.locator("#whoami")).to_have_attribute("title", user.email)
        await expect(page.locator("#boards-view")).to_be_visible()

        await page.click("#account summary")
        await passkey.locator("button:has-text('Delete')").click()
        await expect(passkey).to_have_count(0)
        await page.click("#logout")
        # The authenticator still offers it; the stack no longer knows it.
        await page.click("#passkey-sign-in")
        await expect(page.locator("#error")).to_contain_text("not registered")
        await expect(page.locator("#auth-view")).to_be_visible()
    finally:
        await page.context.close()


@pytest.mark.compose
async def test_the_python_clients_passkey_calls(
    localhost_stack: LocalhostStack, gateway: httpx.AsyncClient
) -> None:
    user = await sign_up(gateway)
    async with AsyncStackClient(localhost_stack.gateway_url, http=gateway) as client:
        await client.login(user.email, PASSWORD)
        options = await client.passkey_registration_options()
        assert options["rp"]["id"] == "localhost"
        assert options["user"]["name"] == user.email
        assert await client.passkeys() == []
        sign_in = await client.passkey_sign_in_options()
        assert sign_in["rpId"] == "localhost"
        assert "allowCredentials" not in sign_in or sign_in["allowCredentials"] == []
        with pytest.raises(StackError) as refused:
            await client.sign_in_with_passkey({"response": {}})
        assert refused.value.status == 400
        assert refused.value.error == "passkey_refused"
        with pytest.raises(StackError) as missing:
            await client.delete_passkey(str(uuid.uuid4()))
        assert missing.value.status == 404
