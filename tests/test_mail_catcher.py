"""The native stack's development mail catcher: what auth-service sends lands as .eml files
under the run directory, and the links in them work through the gateway."""

import asyncio
import email
import email.policy
import re
from pathlib import Path

from .conftest import gateway_client, native_stack

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
