"""A real SMTP server (aiosmtpd) for the mail tests, keeping what it receives."""

import asyncio
import email
import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devstack.testing import free_port


@dataclass
class Catcher:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    # Refuse this many deliveries first (451, a temporary failure), to exercise retries.
    refuse_next: int = 0
    attempts: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return "451 try again later"
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str, subject: str | None = None) -> list[EmailMessage]:
        return [
            m
            for m in self.messages
            if m["To"] == address and (subject is None or m["Subject"] == subject)
        ]

    async def wait_for(
        self, address: str, subject: str | None = None, timeout: float = 10.0
    ) -> EmailMessage:
        async with asyncio.timeout(timeout):
            while not self.to(address, subject):  # noqa: ASYNC110 (filled by the SMTP thread)
                await asyncio.sleep(0.05)
        return self.to(address, subject)[-1]


@contextmanager
def mail_catcher() -> Iterator[Catcher]:
    catcher = Catcher(free_port())
    controller = Controller(catcher, hostname="127.0.0.1", port=catcher.port)
    controller.start()
    try:
        yield catcher
    finally:
        controller.stop()
