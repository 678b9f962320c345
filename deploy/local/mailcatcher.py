"""The development mail catcher: an SMTP server that accepts every message and saves it as an
`.eml` file (open it with any mail client), and a read-only web view of what it saved.

    python deploy/local/mailcatcher.py --port 1025 --dir var/stack/mail --http-port 8025

The native launcher starts it when SMTP_HOST is unset and points auth-service at it; compose
runs it as the `mailcatcher` service (mailcatcher.Dockerfile beside this file). The web view:
`/` lists the messages newest first, `/messages/<id>` shows one as plain text with its links
clickable, `/messages.json` is the listing with each message's text, for tests and scripts.
Every part of a message is whatever its sender chose: the view escapes all of it, and its pages
forbid scripts besides (Content-Security-Policy).
"""

import argparse
import asyncio
import html
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

# http(s) only (never `javascript:`), and without the punctuation that ends a sentence.
_LINK = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)]")
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STYLE = (
    "body{font:15px/1.4 system-ui,sans-serif;margin:1rem auto;max-width:60rem}"
    "td,th{text-align:left;padding:.2rem .6rem;border-bottom:1px solid #ddd}"
    "pre{white-space:pre-wrap;background:#f6f6f8;padding:.6rem}"
)


class SaveToDirectory:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        # Microseconds in the name: names sort in arrival order, which the view lists by.
        received = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
        name = f"{received}-{uuid.uuid4().hex[:8]}.eml"
        # Written whole under a temporary name, then renamed: a reader never sees half a file.
        partial = self.directory / f".{name}.part"
        await asyncio.to_thread(partial.write_bytes, content)
        await asyncio.to_thread(partial.rename, self.directory / name)
        return "250 OK"


def saved_messages(directory: Path) -> dict[str, Path]:
    """Every saved message by id (its file name without `.eml`), newest first."""
    paths = sorted(directory.glob("*.eml"), reverse=True)
    return {path.stem: path for path in paths}


def text_of(message: EmailMessage) -> str:
    """The plain-text part (or the HTML part's source), never rendered."""
    body = message.get_body(("plain", "html"))
    if body is None:
        return ""
    try:
        content = body.get_content()
    except (LookupError, ValueError):  # an unknown or lying charset
        raw = body.get_payload(decode=True)
        content = raw.decode(errors="replace") if isinstance(raw, bytes) else ""
    return content.replace("\r\n", "\n") if isinstance(content, str) else ""


def summary(message_id: str, path: Path) -> dict[str, Any]:
    message = message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=policy.default)
    assert isinstance(message, EmailMessage)
    received = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return {
        "id": message_id,
        "received": received.isoformat(timespec="seconds"),
        "from": str(message.get("From", "")),
        "to": str(message.get("To", "")),
        "subject": str(message.get("Subject", "")),
        "text": text_of(message),
    }


def with_links(text: str) -> str:
    """The text escaped for HTML, its http(s) URLs as links."""
    parts, end = [], 0
    for link in _LINK.finditer(text):
        url = html.escape(link.group())
        parts += [html.escape(text[end : link.start()]), f'<a href="{url}">{url}</a>']
        end = link.end()
    parts.append(html.escape(text[end:]))
    return "".join(parts)


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def listing_page(messages: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(m['received'])}</td><td>{html.escape(m['from'])}</td>"
        f'<td>{html.escape(m["to"])}</td><td><a href="/messages/{html.escape(m["id"])}">'
        f"{html.escape(m['subject']) or '(no subject)'}</a></td></tr>"
        for m in messages
    )
    table = (
        f"<table><tr><th>Received</th><th>From</th><th>To</th><th>Subject</th></tr>{rows}</table>"
        if messages
        else "<p>No messages yet.</p>"
    )
    return page("Mail catcher", f"<h1>Mail catcher</h1>{table}")


def message_page(m: dict[str, Any]) -> str:
    fields = "".join(
        f"<tr><th>{label}</th><td>{html.escape(m[key])}</td></tr>"
        for label, key in (("From", "from"), ("To", "to"), ("Subject", "subject"))
    )
    body = (
        f'<p><a href="/">All messages</a></p><table>{fields}'
        f"<tr><th>Received</th><td>{html.escape(m['received'])}</td></tr></table>"
        f"<pre>{with_links(m['text'])}</pre>"
    )
    return page(m["subject"] or "(no subject)", body)


class MailView(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], directory: Path) -> None:
        super().__init__(address, ViewHandler)
        self.directory = directory


class ViewHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, MailView)
        messages = saved_messages(self.server.directory)
        path = self.path.split("?", 1)[0]
        if path == "/messages.json":
            listing = [summary(message_id, file) for message_id, file in messages.items()]
            self.answer(HTTPStatus.OK, "application/json", json.dumps(listing))
        elif path == "/":
            listing = [summary(message_id, file) for message_id, file in messages.items()]
            self.answer(HTTPStatus.OK, "text/html; charset=utf-8", listing_page(listing))
        elif path.startswith("/messages/") and path[len("/messages/") :] in messages:
            message_id = path[len("/messages/") :]
            shown = message_page(summary(message_id, messages[message_id]))
            self.answer(HTTPStatus.OK, "text/html; charset=utf-8", shown)
        else:
            self.answer(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", "not found\n")

    def answer(self, status: HTTPStatus, content_type: str, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: compose's healthcheck asks every few seconds, and a line per request would
        bury the SMTP server's own messages."""


async def serve(host: str, port: int, http_port: int, directory: Path) -> None:
    # The web view first: once the SMTP port answers, both are up (the launcher waits on it).
    view = MailView((host, http_port), directory)
    threading.Thread(target=view.serve_forever, name="mail-view", daemon=True).start()
    handler = SaveToDirectory(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="the address of both servers")
    parser.add_argument("--port", type=int, required=True, help="SMTP")
    parser.add_argument("--http-port", type=int, required=True, help="the web view")
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.host, args.port, args.http_port, args.dir))


if __name__ == "__main__":
    main()
