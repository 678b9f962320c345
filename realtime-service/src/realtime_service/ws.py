"""WebSocket: `GET /realtime/ws`, the protocol of docs/contract.md §7."""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from realtime_service import metrics
from realtime_service.channels import InvalidChannel, can_publish, channel_name, parse_channel
from realtime_service.config import Settings
from realtime_service.event_ids import InvalidEventId, event_id_from_json
from realtime_service.events import LogEvent
from realtime_service.hub import Hub, Item, Subscriber
from realtime_service.identity import identity_from_token
from realtime_service.subscriptions import open_channels, replay
from realtime_service.tickets import Identity, redeem_ticket
from servicekit.db import Database
from servicekit.errors import Forbidden, ServiceError
from servicekit.jsondepth import MAX_JSON_DEPTH, json_nesting_exceeds
from servicekit.outage import is_database_unavailable, outage

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/realtime", tags=["realtime"])


# Not a close code: the reader ended (the client left, or broke the protocol), so the writer
# stops; whatever the reader raised decides how the connection ends.
CLIENT_GONE = 0


class Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class RateLimiter:
    """A token bucket: `rate` per second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, ticket: str | None = None) -> None:
    settings: Settings = websocket.app.state.settings
    await websocket.accept()
    metrics.CONNECTIONS.labels(transport="ws").inc()
    try:
        await _serve(websocket, ticket, settings)
    except Close as close:
        await _close(websocket, close)
    except WebSocketDisconnect:
        pass
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        outage.began(exc)
        await _close(websocket, Close(1011, "the database is unreachable: reconnect later"))
    finally:
        metrics.CONNECTIONS.labels(transport="ws").dec()


async def _serve(websocket: WebSocket, ticket: str | None, settings: Settings) -> None:
    origin = websocket.headers.get("origin")
    if origin is not None and origin not in settings.allowed_origins:
        if ticket is not None:
            # Spent on its first presentation, whatever the outcome: a ticket that leaked
            # into a foreign page must not stay usable.
            await _redeem(websocket, ticket)
        raise Close(1008, "origin not allowed")
    identity = await _authenticate(websocket, ticket, settings)
    await Session(websocket, identity, settings).run()


async def _close(websocket: WebSocket, close: Close) -> None:
    metrics.DISCONNECTS.labels(transport="ws", code=str(close.code)).inc()
    with contextlib.suppress(Exception):
        await websocket.close(close.code, close.reason)


async def _redeem(websocket: WebSocket, ticket: str) -> Identity | None:
    database: Database = websocket.app.state.db
    async with database.acquire() as connection:
        return await redeem_ticket(connection, ticket)


async def _authenticate(websocket: WebSocket, ticket: str | None, settings: Settings) -> Identity:
    verifier = websocket.app.state.token_verifier
    if ticket is not None:
        identity = await _redeem(websocket, ticket)
        if identity is None:
            raise Close(4401, "the ticket is unknown, used or expired")
        return identity
    authorization = websocket.headers.get("authorization")
    if authorization is not None:
        return await _verify(verifier, authorization.partition(" ")[2].strip())
    try:
        first = await asyncio.wait_for(websocket.receive_text(), settings.ws_auth_timeout_seconds)
    except TimeoutError as exc:
        raise Close(4008, "no auth message in time") from exc
    message = _parse(first, settings)
    if message.get("type") != "auth" or not isinstance(message.get("token"), str):
        raise Close(4400, "the first message must be {type: auth, token}")
    return await _verify(verifier, message["token"])


async def _verify(verifier: Any, token: str) -> Identity:
    try:
        return await identity_from_token(verifier, token)
    except ServiceError as exc:
        raise Close(4401, "invalid token") from exc


def _parse(text: str, settings: Settings) -> dict[str, Any]:
    if len(text.encode()) > settings.max_ws_message_bytes:
        raise Close(1009, f"messages are limited to {settings.max_ws_message_bytes} bytes")
    if json_nesting_exceeds(text):
        raise Close(4400, f"JSON may nest at most {MAX_JSON_DEPTH} levels")
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise Close(4400, "messages must be JSON objects") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise Close(4400, "messages must be JSON objects with a type")
    return message


def _last_event_id(message: dict[str, Any]) -> int | None:
    value = message.get("last_event_id")
    return None if value is None else event_id_from_json(value)


class Session:
    """One authenticated WebSocket: a reader for client messages, a writer for deliveries."""

    def __init__(self, websocket: WebSocket, identity: Identity, settings: Settings) -> None:
        self.websocket = websocket
        self.identity = identity
        self.settings = settings
        self.hub: Hub = websocket.app.state.hub
        self.database: Database = websocket.app.state.db
        self.subscriber = Subscriber(identity.user_id, "ws", settings.queue_limit)
        self.limiter = RateLimiter(settings.publish_rate_per_second, settings.publish_burst)
        self.warned = False
        # Held while a subscription replays, so its live events wait behind the replay.
        self.send_lock = asyncio.Lock()

    async def run(self) -> None:
        """The writer runs in this task and the reader in one more: per idle connection, a
        task fewer is memory saved (bench/README.md)."""
        reader = asyncio.create_task(self._read())
        reader.add_done_callback(lambda _: self.subscriber.close(CLIENT_GONE, "reader ended"))
        try:
            await self._write()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self.hub.remove(self.subscriber)
        if not reader.cancelled() and (error := reader.exception()) is not None:
            raise error

    async def _send(self, message: dict[str, Any]) -> None:
        """Callers hold `send_lock`: the reader and the writer both send."""
        await self.websocket.send_text(json.dumps(message))

    async def reply(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self._send(message)

    async def _read(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                raise Close(4400, "binary frames are not part of the protocol")
            await self._handle(_parse(text, self.settings))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ping":
            await self.reply({"type": "pong"})
        elif kind == "subscribe":
            channel = self._channel(message)
            try:
                last_event_id = _last_event_id(message)
            except InvalidEventId:
                detail = "last_event_id must be an event id: an integer, or ASCII digits"
                await self.reply(
                    {"type": "error", "code": "invalid_last_event_id", "detail": detail}
                )
                return
            await self._subscribe(channel, last_event_id)
        elif kind == "unsubscribe":
            channel = self._channel(message)
            self.hub.unsubscribe(self.subscriber, channel)
            await self.reply({"type": "unsubscribed", "channel": channel, "reason": "requested"})
        elif kind == "publish":
            await self._publish(self._channel(message), message.get("data"))
        elif kind == "auth":
            await self._reauthenticate(message.get("token"))
        else:
            raise Close(4400, f"unknown message type {kind[:40]!r}")

    def _channel(self, message: dict[str, Any]) -> str:
        raw = message.get("channel")
        if not isinstance(raw, str):
            raise Close(4400, "channel must be a string")
        try:
            return channel_name(*parse_channel(raw))
        except InvalidChannel as exc:
            raise Close(4400, str(exc)) from exc

    async def _subscribe(self, channel: str, last_event_id: int | None) -> None:
        if channel not in self.subscriber.channels and (
            len(self.subscriber.channels) >= self.settings.max_channels
        ):
            await self.reply({"type": "error", "code": "too_many_channels", "detail": channel})
            return
        async with self.send_lock:
            try:
                async with self.database.acquire() as connection:
                    opened = await open_channels(
                        self.hub, connection, self.subscriber, [channel], last_event_id
                    )
            except Forbidden as exc:
                raise Close(4403, f"you may not read {channel}") from exc
            # The position the channel is complete through once its replay (sent next) is done:
            # a client that subscribed without one resumes from it after a drop.
            subscribed = {"channel": channel, "last_event_id": opened.replay_through}
            await self._send({"type": "subscribed", **subscribed})
            if opened.reset:
                detail = "the cursor is outside the event log: refetch, then follow live"
                await self._send({"type": "error", "code": "reset", "detail": detail})
            async for batch in replay(self.hub, self.database, opened, [channel]):
                await self._deliver(batch)

    async def _publish(self, channel: str, data: object) -> None:
        encoded = json.dumps(data)
        if len(encoded.encode()) > self.settings.max_publish_bytes:
            await self.reply({"type": "error", "code": "too_large", "detail": "data over 4 KiB"})
            return
        if not self.limiter.allow():
            raise Close(4029, "publishing too fast")
        async with self.database.acquire() as connection:
            if not await can_publish(connection, self.identity.user_id, channel):
                detail = f"only owners and editors may publish on {channel}"
                await self.reply({"type": "error", "code": "forbidden", "detail": detail})
                return
            await self.hub.publish(
                connection,
                {
                    "channel": channel,
                    "from": str(self.identity.user_id),
                    "data": data,
                    "sender": self.subscriber.id,
                },
            )

    async def _reauthenticate(self, token: object) -> None:
        if not isinstance(token, str):
            raise Close(4400, "auth needs a token")
        identity = await _verify(self.websocket.app.state.token_verifier, token)
        if identity.user_id != self.identity.user_id:
            raise Close(4401, "the token belongs to another user")
        self.identity = identity
        self.warned = False

    async def _write(self) -> None:
        while True:
            remaining = self.identity.expires_at - time.time()
            if remaining <= 0:
                raise Close(4001, "token expired: reconnect with a fresh token and resume")
            warn_in = remaining - self.settings.token_expiry_warning_seconds
            if warn_in <= 0 and not self.warned:
                self.warned = True
                await self.reply({"type": "token_expiring", "expires_in": int(remaining)})
            next_deadline = remaining if self.warned else max(warn_in, 0.0)
            await self.subscriber.wait(next_deadline)
            if self.subscriber.close_reason is not None:
                code, reason = self.subscriber.close_reason
                if code == CLIENT_GONE:
                    return
                raise Close(code, reason)
            revoked = self.subscriber.take_revoked()
            items = self.subscriber.take()
            async with self.send_lock:
                for channel in revoked:
                    await self._send(
                        {"type": "unsubscribed", "channel": channel, "reason": "forbidden"}
                    )
                await self._deliver(items)

    async def _deliver(self, items: Sequence[Item]) -> None:
        now = time.time()
        delivered = 0
        for item in items:
            if item.channel not in self.subscriber.channels:
                continue
            await self.websocket.send_text(item.ws)
            if isinstance(item, LogEvent):
                delivered += 1
                metrics.DELIVERY_LATENCY.observe(max(0.0, now - item.committed_at))
        metrics.EVENTS_DELIVERED_BY_TRANSPORT["ws"].inc(delivered)
