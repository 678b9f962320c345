"""The development mail catcher: what auth-service sends lands as .eml files under the run
directory, the links in them work through the gateway, and its web view shows every message
escaped."""

import asyncio
import email
import email.policy
import re
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import pytest
from playwright.async_api import async_playwright, expect

from devstack.testing import free_port

from .conftest import ROOT, gateway_client, native_stack
from .test_demo_page import CHROMIUM, CHROMIUM_ARGS

PASSWORD = "correct horse battery"


def saved_messages(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.eml"))


async def wait_for_eml(directory: Path, timeout: float = 15.0) -> Path:
    async with asyncio.timeout(timeout):
        # Files written by another process: nothing to wait on but the directory itself.
        while not (found := await asyncio.to_thread(saved_messages, directory)):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return found[0]


async def test_a_reset_mail_is_saved_and_its_link_resets_the_password() -> None:
    async with native_stack("mail") as stack, gateway_client(stack.config.gateway_url) as client:
        gateway = stack.config.gateway_url
        address = "mail-catcher@example.com"
        registered = await client.post(
            f"{gateway}/auth/register", json={"email": address, "password": PASSWORD}
        )
        assert registered.status_code == 201
        # The launcher restarts it as it restarts a service: it is back before this returns.
        await stack.restart("mailcatcher")
        forgot = await client.post(f"{gateway}/auth/password/forgot", json={"email": address})
        assert forgot.status_code == 202
        eml = await wait_for_eml(stack.config.run_dir / "mail")
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        assert message["To"] == address
        body = message.get_body(("plain",))
        assert body is not None
        link = re.search(rf"{re.escape(gateway)}/#reset-password=([\w-]+)", body.get_content())
        assert link is not None
        reset = await client.post(
            f"{gateway}/auth/password/reset",
            json={"token": link.group(1), "password": "a new password here"},
        )
        assert reset.status_code == 204
        login = await client.post(
            f"{gateway}/auth/token",
            data={"grant_type": "password", "username": address, "password": "a new password here"},
        )
        assert login.status_code == 200


class Catcher:
    def __init__(self, smtp_port: int, url: str) -> None:
        self.smtp_port, self.url = smtp_port, url

    async def send(self, subject: str, text: str, to: str = "someone@example.com") -> None:
        message = EmailMessage()
        message["From"] = "Mallory <mallory@example.com>"
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        await aiosmtplib.send(message, hostname="127.0.0.1", port=self.smtp_port)


@pytest.fixture
async def catcher(tmp_path: Path) -> AsyncIterator[Catcher]:
    """The catcher alone, as the launcher and the compose service run it."""
    smtp_port, http_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "deploy" / "local" / "mailcatcher.py"),
        "--port",
        str(smtp_port),
        "--http-port",
        str(http_port),
        "--dir",
        str(tmp_path / "mail"),
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(15):
            while True:
                try:
                    await client.get(f"{url}/messages.json")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        yield Catcher(smtp_port, url)
    finally:
        process.terminate()
        await process.wait()


HOSTILE_SUBJECT = "<script>document.title='owned'</script> <b>urgent</b>"
HOSTILE_TEXT = (
    "Hello <b>there</b> & <img src=x onerror=alert(1)>\n"
    "Reset: http://127.0.0.1:8080/#reset-password=abc-DEF_123.\n"
    'Not a link: javascript:alert(1) "quoted"\n'
)


async def test_the_web_view_lists_newest_first_and_shows_messages_as_text(
    catcher: Catcher,
) -> None:
    await catcher.send("first", "the first message")
    await catcher.send(HOSTILE_SUBJECT, HOSTILE_TEXT, to="victim@example.com")
    async with httpx.AsyncClient() as client:
        listed = await client.get(f"{catcher.url}/messages.json")
        missing = await client.get(f"{catcher.url}/messages/..%2F..%2Fetc%2Fpasswd")
    assert listed.status_code == 200
    assert listed.headers["content-type"] == "application/json"
    newest, first = listed.json()
    assert first["subject"] == "first"
    assert newest["subject"] == HOSTILE_SUBJECT
    assert newest["from"] == "Mallory <mallory@example.com>"
    assert newest["to"] == "victim@example.com"
    assert newest["text"] == HOSTILE_TEXT
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", newest["received"])
    assert missing.status_code == 404

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(catcher.url + "/")
            rows = page.locator("tr td:last-child a")
            await expect(rows).to_have_text([HOSTILE_SUBJECT, "first"])
            await expect(page.locator("b, img, body script")).to_have_count(0)
            await rows.first.click()
            await expect(page).to_have_url(f"{catcher.url}/messages/{newest['id']}")
            # Shown as the text it is: no element made of it, nothing run.
            await expect(page.locator("td", has_text="<b>urgent</b>")).to_have_count(1)
            await expect(page.locator("pre")).to_have_text(HOSTILE_TEXT)
            await expect(page.locator("b, img, script")).to_have_count(0)
            assert await page.title() == HOSTILE_SUBJECT
            # Its http(s) URLs are links, the sentence's full stop left out; nothing else is.
            link = page.locator("pre a")
            await expect(link).to_have_count(1)
            await expect(link).to_have_attribute(
                "href", "http://127.0.0.1:8080/#reset-password=abc-DEF_123"
            )
        finally:
            await browser.close()
