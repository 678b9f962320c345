"""Outgoing mail: messages rendered from templates (plain text and HTML) and sent over SMTP by
background workers, off the request path, with retries. Nothing here logs a message's body or
link: they carry one-time tokens."""

import asyncio
import html
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from importlib import resources
from string import Template

import aiosmtplib

from auth_service import metrics
from auth_service.config import Settings
from servicekit.outage import is_database_unavailable, outage
from servicekit.supervisor import Heartbeat, Supervisor

logger = logging.getLogger(__name__)

SUBJECTS = {"verify": "Verify your email address", "reset": "Reset your password"}


@dataclass(frozen=True)
class Mail:
    kind: str
    to: str
    name: str
    link: str


@dataclass(frozen=True)
class MailRequest:
    """Asked for by a request, prepared by a worker: `verify` names the user, `reset` the
    email (which may belong to no account: then nothing is sent)."""

    kind: str
    user_id: uuid.UUID | None = None
    email: str | None = None


Prepare = Callable[[MailRequest], Awaitable[Mail | None]]


def _template(name: str) -> Template:
    return Template(resources.files("auth_service").joinpath("templates", name).read_text())


TEMPLATES = {
    (kind, part): _template(f"{kind}.{part}") for kind in SUBJECTS for part in ("txt", "html")
}


def render(mail: Mail, sender: str) -> EmailMessage:
    values = {"name": mail.name, "email": mail.to, "link": mail.link}
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = SUBJECTS[mail.kind]
    message.set_content(TEMPLATES[mail.kind, "txt"].substitute(values))
    escaped = {key: html.escape(value, quote=True) for key, value in values.items()}
    message.add_alternative(TEMPLATES[mail.kind, "html"].substitute(escaped), subtype="html")
    return message


class Mailer:
    """A bounded queue of mail requests and the workers that prepare (look the account up,
    issue the token) and send them, so a request answers before any of that happens."""

    def __init__(self, settings: Settings, prepare: Prepare) -> None:
        self.settings = settings
        self._prepare = prepare
        self._queue: asyncio.Queue[MailRequest] = asyncio.Queue(settings.mail_queue_size)

    def start(self, loops: Supervisor) -> None:
        """The workers, as loops `loops` supervises (and stops)."""
        if self.settings.smtp_host is None:
            logger.warning("SMTP_HOST is not set: verification and reset mail is not sent")
        for n in range(self.settings.mail_workers):
            # Not essential: logins and registrations work without mail. An idle worker makes
            # no progress to report, so it is never stalled, only restarted when it fails.
            loops.spawn(f"mailer_{n}", self._work, essential=False)

    def submit(self, request: MailRequest) -> None:
        if self.settings.smtp_host is None:
            metrics.EMAILS_SENT.labels(kind=request.kind, outcome="disabled").inc()
            return
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            metrics.EMAILS_SENT.labels(kind=request.kind, outcome="dropped").inc()
            logger.warning("mail queue full: request dropped", extra={"kind": request.kind})

    async def _work(self, heartbeat: Heartbeat) -> None:
        while True:
            heartbeat.beat()
            request = await self._queue.get()
            try:
                mail = await self._prepare(request)
            except Exception as exc:
                metrics.EMAILS_SENT.labels(kind=request.kind, outcome="failed").inc()
                if is_database_unavailable(exc):
                    outage.began(exc)  # logged once per outage, not once per message
                else:
                    logger.exception("mail not prepared", extra={"kind": request.kind})
                continue
            if mail is not None:
                await self._send_with_retries(mail)

    async def _send_with_retries(self, mail: Mail) -> None:
        settings = self.settings
        message = render(mail, settings.smtp_from)
        for attempt in range(1, settings.mail_attempts + 1):
            try:
                await self._send(message)
            except (aiosmtplib.SMTPException, OSError) as exc:
                # The error's type only: an SMTP reply may quote the message back.
                logger.warning(
                    "mail not sent",
                    extra={"kind": mail.kind, "attempt": attempt, "err": type(exc).__name__},
                )
                if attempt < settings.mail_attempts:
                    await asyncio.sleep(settings.mail_retry_base_seconds * 2 ** (attempt - 1))
                continue
            metrics.EMAILS_SENT.labels(kind=mail.kind, outcome="sent").inc()
            return
        metrics.EMAILS_SENT.labels(kind=mail.kind, outcome="failed").inc()
        logger.error("mail given up", extra={"kind": mail.kind})

    async def _send(self, message: EmailMessage) -> None:
        settings = self.settings
        assert settings.smtp_host is not None
        password = settings.smtp_password_value()
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            use_tls=settings.smtp_tls,
            start_tls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=password,
            timeout=settings.smtp_timeout_seconds,
        )
