"""Live subscriptions (docs/contract.md §7): an async iterator of events that resumes by itself.

    async with client.live.subscribe([f"board:{board_id}"], transport="ws") as subscription:
        async for item in subscription:
            if isinstance(item, Reset):
                ...  # refetch: the position could not be resumed
            else:
                print(item.id, item.type, item.data)

Each connection gets a fresh ticket; a dropped or stalled one is replaced with jittered
exponential backoff and resumed from the last delivered id, with no gap and no duplicate.
4401 and 4403 end the iteration with `SubscriptionStopped`; 4001 refreshes the token first;
4002 and 1012 resume at once.
"""

import asyncio
import contextlib
import json
import logging
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from stack_client.client import retry_after
from stack_client.errors import StackError, SubscriptionStopped

if TYPE_CHECKING:
    from stack_client.client import AsyncStackClient

Transport = Literal["sse", "ws"]
State = Literal["connecting", "live", "reconnecting", "stopped"]

STOP_CODES = frozenset({1008, 1009, 4400, 4401, 4403})
REFRESH_CODES = frozenset({4001})
RESUME_NOW_CODES = frozenset({1012, 4002})
HTTP_TO_CLOSE_CODE = {401: 4401, 403: 4403, 422: 4400}
# Not a close code: the connection failed or stalled, or the stream just ended.
LOST = 0

_TICKET_IN_QUERY = re.compile(r"(ticket=)[^&\s\"']+")


class _RedactTickets(logging.Filter):
    """A ticket travels in the realtime URL's query (where the server takes it) and is a
    credential until redeemed; httpx logs every request's URL at INFO and websockets the
    handshake's path at DEBUG. Nothing secret reaches a log, so both see it redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        return True


def _redacted(arg: object) -> object:
    """`arg` as it was (a number stays a number for `%d`), or its text with tickets redacted."""
    text = str(arg)
    return _TICKET_IN_QUERY.sub(r"\1[redacted]", text) if "ticket=" in text else arg


for _logger_name in ("httpx", "websockets.client"):
    logging.getLogger(_logger_name).addFilter(_RedactTickets())


@dataclass(frozen=True)
class Event:
    """An event of the log (docs/contract.md §6), the same on both transports."""

    id: int
    channel: str
    type: str
    data: dict[str, Any]
    actor_id: str
    created_at: str


@dataclass(frozen=True)
class Reset:
    """The position could not be resumed (older than retention, unknown): refetch state."""

    detail: str
    channel: str | None = None


@dataclass(frozen=True)
class Message:
    """An ephemeral message (WebSocket only)."""

    channel: str
    sender: str
    data: Any


@dataclass
class Ended:
    code: int
    reason: str
    was_live: bool = False
    token_expires_at: float = 0.0
    retry_after: float | None = None


@dataclass
class StateChange:
    state: State
    code: int | None = None
    reason: str = ""
    delay: float | None = None


Item = Event | Reset | Message


class Live:
    def __init__(self, client: "AsyncStackClient") -> None:
        self.client = client
        self.subscriptions: set[Subscription] = set()

    async def ticket(self) -> str:
        """A one-time ticket for one realtime connection."""
        body = await self.client.request("POST", "/realtime/tickets")
        return str(body["ticket"])

    def subscribe(
        self,
        channels: list[str],
        *,
        transport: Transport = "sse",
        last_event_id: int | None = None,
        heartbeat: float = 15.0,
        backoff: tuple[float, float] = (0.5, 20.0),
        on_state: Callable[[StateChange], None] | None = None,
        queue_size: int = 1000,
    ) -> "Subscription":
        """A subscription to `channels`; iterate it (inside `async with`) for its items.
        `heartbeat` is the server's SSE heartbeat, or the WebSocket ping interval: a
        connection silent for twice as long is replaced."""
        subscription = Subscription(
            self,
            channels,
            transport=transport,
            last_event_id=last_event_id,
            heartbeat=heartbeat,
            backoff=backoff,
            on_state=on_state,
            queue_size=queue_size,
        )
        self.subscriptions.add(subscription)
        return subscription

    async def publish(self, channel: str, data: Any) -> None:
        """An ephemeral message over a live WebSocket subscription to `channel`."""
        for subscription in self.subscriptions:
            if (
                subscription.transport == "ws"
                and channel in subscription.channels
                and subscription.state == "live"
            ):
                await subscription.publish(channel, data)
                return
        raise StackError(0, {"error": "not_connected", "detail": f"no live WebSocket on {channel}"})

    async def aclose(self) -> None:
        for subscription in list(self.subscriptions):
            await subscription.aclose()


@dataclass
class _Positions:
    """SSE: one position, ids being global. WebSocket: one per channel, each replaying alone."""

    transport: Transport
    overall: int | None = None
    channels: dict[str, int | None] = field(default_factory=dict)

    def get(self, channel: str | None) -> int | None:
        if self.transport == "sse" or channel is None:
            return self.overall
        return self.channels.get(channel)

    def advance(self, event: Event) -> bool:
        """True for an event not delivered before."""
        current = self.get(event.channel)
        if current is not None and event.id <= current:
            return False
        if self.transport == "sse":
            self.overall = event.id
        else:
            self.channels[event.channel] = event.id
        return True


class Subscription:
    def __init__(
        self,
        live: Live,
        channels: list[str],
        *,
        transport: Transport,
        last_event_id: int | None,
        heartbeat: float,
        backoff: tuple[float, float],
        on_state: Callable[[StateChange], None] | None,
        queue_size: int,
    ) -> None:
        if transport not in ("sse", "ws"):
            raise ValueError("transport is 'sse' or 'ws'")
        self.live = live
        self.client = live.client
        self.channels = list(channels)
        self.transport: Transport = transport
        self.heartbeat = heartbeat
        self.backoff = backoff
        self.on_state = on_state
        self.state: State = "connecting"
        self.stopped: SubscriptionStopped | None = None
        self.connections = 0
        self._positions = _Positions(transport, last_event_id)
        for channel in self.channels:
            self._positions.channels[channel] = last_event_id
        # Bounded: an application slower than the stream stops the reading, the server cuts
        # the connection off as too slow (4002), and the subscription resumes from its position.
        self._queue: asyncio.Queue[Item | BaseException | None] = asyncio.Queue(queue_size)
        self._runner: asyncio.Task[None] | None = None
        # No more items will come: closed by the application, or the stop or failure that
        # ends the iteration has been raised.
        self._ended = False
        self._failure: Exception | None = None
        self._went_live = asyncio.Event()
        self._socket: ClientConnection | None = None

    @property
    def last_event_id(self) -> int | None:
        """Where a new subscription would resume from without missing anything."""
        if self.transport == "sse":
            return self._positions.overall
        positions = [self._positions.channels.get(channel) for channel in self.channels]
        known = [position for position in positions if position is not None]
        return min(known) if len(known) == len(positions) else None

    async def __aenter__(self) -> "Subscription":
        """Starts the subscription and returns once it is live (nothing written from then on
        is missed); raises `SubscriptionStopped` if it stops before."""
        self.start()
        assert self._runner is not None
        live = asyncio.create_task(self._went_live.wait())
        await asyncio.wait([live, self._runner], return_when=asyncio.FIRST_COMPLETED)
        live.cancel()
        if self.stopped is not None:
            raise self.stopped
        if self._failure is not None:
            raise self._failure
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._items()

    async def _items(self) -> AsyncIterator[Item]:
        self.start()
        while not (self._ended and self._queue.empty()):
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            yield item

    async def aclose(self) -> None:
        self.live.subscriptions.discard(self)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._set_state(StateChange("stopped", 1000, "closed by the client"))
        # Ends an iteration waiting in another task (a full queue: it ends once drained).
        self._ended = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def publish(self, channel: str, data: Any) -> None:
        if self._socket is None or self.state != "live":
            detail = "the subscription is not live"
            raise StackError(0, {"error": "not_connected", "detail": detail})
        await self._socket.send(json.dumps({"type": "publish", "channel": channel, "data": data}))

    def _set_state(self, change: StateChange) -> None:
        if self.state == "stopped":
            return
        self.state = change.state
        if self.on_state is not None:
            self.on_state(change)

    async def _run(self) -> None:
        try:
            await self._follow()
        except Exception as error:
            # A malformed frame or a bug: end the iteration with it rather than leave it waiting.
            self._failure = error
            self._set_state(StateChange("stopped", None, f"failed: {error!r}"))
            await self._queue.put(error)
        finally:
            self.live.subscriptions.discard(self)

    async def _follow(self) -> None:
        attempt = 0
        initial, ceiling = self.backoff
        while True:
            ended = await self._connect_once()
            if ended.was_live:
                attempt = 0
            if ended.code in STOP_CODES:
                self.stopped = SubscriptionStopped(ended.code, ended.reason)
                self._set_state(StateChange("stopped", ended.code, ended.reason))
                await self._queue.put(self.stopped)
                return
            top = min(ceiling, initial * 2**attempt)
            if ended.code in REFRESH_CODES:
                try:
                    await self.client.access_token(newer_than=ended.token_expires_at)
                except StackError:
                    if not self.client.signed_in:
                        continue  # the next attempt reports the sign-out as 4401
                delay = random.uniform(0, 0.25)  # noqa: S311 (jitter, not secrecy)
            elif ended.code in RESUME_NOW_CODES:
                # Everyone on a restarting replica reconnects at once: spread them out.
                delay = random.uniform(0, top)  # noqa: S311
            else:
                delay = random.uniform(top / 2, top)  # noqa: S311
                delay = max(delay, ended.retry_after or 0.0)
            attempt += 1
            self._set_state(StateChange("reconnecting", ended.code, ended.reason, delay))
            await asyncio.sleep(delay)

    async def _connect_once(self) -> Ended:
        # Connecting until the first connection is up or fails; reconnecting from then on.
        self._set_state(StateChange("reconnecting" if self.state != "connecting" else "connecting"))
        try:
            _, token_expires_at = await self.client.access_token()
            ticket = await self.live.ticket()
        except StackError as error:
            if error.status == 401 and not self.client.signed_in:
                return Ended(4401, "signed out")
            return Ended(LOST, f"no ticket: {error}", retry_after=error.retry_after)
        self.connections += 1
        connection: _SseConnection | _WsConnection
        if self.transport == "sse":
            connection = _SseConnection(self, ticket)
        else:
            connection = _WsConnection(self, ticket)
        ended = await connection.run()
        ended.token_expires_at = token_expires_at
        return ended

    # Called by connections.

    def position(self, channel: str | None = None) -> int | None:
        return self._positions.get(channel)

    async def deliver(self, event: Event) -> None:
        if self._positions.advance(event):
            await self._queue.put(event)

    def went_live(self) -> None:
        self._went_live.set()
        self._set_state(StateChange("live"))

    def position_reached(self, position: int) -> None:
        """SSE `ready`: the stream is live from `position`; nothing at or below is missing."""
        if self._positions.overall is None or position > self._positions.overall:
            self._positions.overall = position

    def channel_position_reached(self, channel: str, position: object) -> None:
        """WebSocket `subscribed` for a channel with no position: the server follows it from
        `position` on. (A channel with a position keeps it: its replay comes next.)"""
        if self._positions.channels.get(channel) is None and isinstance(position, int):
            self._positions.channels[channel] = position

    async def reset(self, detail: str, channel: str | None = None) -> None:
        if self.transport == "sse":
            self._positions.overall = None
        elif channel is not None:
            self._positions.channels[channel] = None
        await self._queue.put(Reset(detail, channel))

    async def message(self, message: Message) -> None:
        await self._queue.put(message)


def _event(body: dict[str, Any], type_key: str = "type") -> Event:
    return Event(
        id=int(body["id"]),
        channel=body["channel"],
        type=body[type_key],
        data=body["data"],
        actor_id=body["actor_id"],
        created_at=body["created_at"],
    )


# The event stream's line ends, and only those: `str.splitlines` would also split inside the
# data at U+2028, U+0085 and the like, which JSON (and PostgreSQL's jsonb) leave unescaped.
LINE_END = re.compile(r"\r\n|\r|\n")


class SseParser:
    """The text/event-stream format: frames of `event`, `data` and `id` fields."""

    def __init__(self) -> None:
        self.buffer = ""
        self.event = ""
        self.data: list[str] = []
        self.id: str | None = None

    def feed(self, text: str) -> list[tuple[str, str, str | None]]:
        frames: list[tuple[str, str, str | None]] = []
        buffer = self.buffer + text
        # A \r at the end may be the first half of a \r\n still to come: keep it for later.
        held = "\r" if buffer.endswith("\r") else ""
        *lines, rest = LINE_END.split(buffer.removesuffix(held))
        self.buffer = rest + held
        for line in lines:
            if line == "":
                if self.data or self.event:
                    frames.append((self.event or "message", "\n".join(self.data), self.id))
                self.event, self.data, self.id = "", [], None
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    self.event = value
                elif name == "data":
                    self.data.append(value)
                elif name == "id":
                    self.id = value
        return frames


class _SseConnection:
    def __init__(self, subscription: Subscription, ticket: str) -> None:
        self.subscription = subscription
        self.ticket = ticket
        self.was_live = False

    async def run(self) -> Ended:
        sub = self.subscription
        client = sub.client
        params = {"channels": ",".join(sub.channels), "ticket": self.ticket}
        headers = {"Accept": "text/event-stream"}
        position = sub.position()
        if position is not None:
            headers["Last-Event-ID"] = str(position)
        # The read timeout is the stall detector: no byte (event or heartbeat) for two beats.
        timeout = httpx.Timeout(15.0, read=2 * sub.heartbeat)
        url = f"{client.base_url}/realtime/sse"
        try:
            async with client.http.stream(
                "GET", url, params=params, headers=headers, timeout=timeout
            ) as response:
                if response.is_error:
                    await response.aread()
                    code = HTTP_TO_CLOSE_CODE.get(response.status_code, LOST)
                    reason = f"{response.status_code}: {response.text[:200]}"
                    wait = retry_after(response.headers.get("Retry-After"))
                    return Ended(code, reason, retry_after=wait)
                parser = SseParser()
                async for text in response.aiter_text():
                    for event, data, event_id in parser.feed(text):
                        ended = await self._frame(event, data, event_id)
                        if ended is not None:
                            return ended
                return Ended(LOST, "the stream ended", self.was_live)
        except httpx.ReadTimeout:
            return Ended(LOST, "stalled: no heartbeat", self.was_live)
        except httpx.TransportError as exc:
            return Ended(LOST, f"connection lost: {exc!r}", self.was_live)

    async def _frame(self, event: str, data: str, event_id: str | None) -> Ended | None:
        sub = self.subscription
        if event == "ready":
            sub.position_reached(int(json.loads(data)["last_event_id"]))
            self.was_live = True
            sub.went_live()
        elif event == "reset":
            await sub.reset(str(json.loads(data).get("reason", "reset")))
        elif event == "disconnect":
            body = json.loads(data)
            return Ended(int(body["code"]), str(body["reason"]), self.was_live)
        elif event_id:
            await sub.deliver(_event(json.loads(data)))
        return None


class _WsConnection:
    def __init__(self, subscription: Subscription, ticket: str) -> None:
        self.subscription = subscription
        self.ticket = ticket
        self.was_live = False
        self.pending = set(subscription.channels)
        self.unpositioned: set[str] = set()
        self.last_subscribed: str | None = None

    async def run(self) -> Ended:
        sub = self.subscription
        client = sub.client
        url = client.websocket_url(f"/realtime/ws?ticket={self.ticket}")
        token_changed = asyncio.Event()
        stop_listening = client.on_tokens(token_changed.set)
        keepalive: asyncio.Task[None] | None = None
        try:
            async with connect(
                url, ping_interval=None, open_timeout=15, close_timeout=2, max_size=2**20
            ) as socket:
                sub._socket = socket
                keepalive = asyncio.create_task(self._keepalive(socket, token_changed))
                for channel in sub.channels:
                    message: dict[str, Any] = {"type": "subscribe", "channel": channel}
                    position = sub.position(channel)
                    if position is not None:
                        message["last_event_id"] = position
                    elif sub.connections > 1:
                        self.unpositioned.add(channel)
                    await socket.send(json.dumps(message))
                while True:
                    try:
                        # The stall detector: not even a pong for two ping intervals.
                        async with asyncio.timeout(2 * sub.heartbeat):
                            raw = await socket.recv()
                    except TimeoutError:
                        # A stalled peer would never answer the closing handshake.
                        socket.transport.abort()
                        return Ended(LOST, "stalled: no pong", self.was_live)
                    ended = await self._message(json.loads(raw))
                    if ended is not None:
                        return ended
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                return Ended(LOST, "connection lost", self.was_live)
            return Ended(closed.rcvd.code, closed.rcvd.reason, self.was_live)
        except InvalidStatus as refused:
            status = refused.response.status_code
            wait = retry_after(refused.response.headers.get("Retry-After"))
            return Ended(
                HTTP_TO_CLOSE_CODE.get(status, LOST), f"refused: {status}", retry_after=wait
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            # InvalidHandshake (after InvalidStatus, a refusal): no valid answer came, e.g. the
            # connection closed mid-handshake as a gateway went down. Lost, so retried.
            return Ended(LOST, f"connection failed: {exc!r}", self.was_live)
        finally:
            stop_listening()
            sub._socket = None
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, StackError):
                    await keepalive

    async def _keepalive(self, socket: ClientConnection, token_changed: asyncio.Event) -> None:
        """Pings every heartbeat, and hands each refreshed token to the server before the
        connection's one expires (so a live WebSocket never has to reconnect for it). A token
        does not put the next ping off: the stall detector counts on one every heartbeat."""
        client = self.subscription.client
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.subscription.heartbeat
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_ping):
                    await token_changed.wait()
            if token_changed.is_set():
                token_changed.clear()
                token, _ = await client.access_token()
                await socket.send(json.dumps({"type": "auth", "token": token}))
            else:
                next_ping = loop.time() + self.subscription.heartbeat
                await socket.send('{"type":"ping"}')

    async def _message(self, message: dict[str, Any]) -> Ended | None:
        sub = self.subscription
        kind = message.get("type")
        if kind == "event":
            await sub.deliver(_event(message, "event"))
        elif kind == "subscribed":
            channel = message["channel"]
            self.pending.discard(channel)
            self.last_subscribed = channel
            if channel in self.unpositioned:
                # Subscribed again with no position (no event had come before the drop):
                # what was written meanwhile cannot be replayed. Say so.
                await sub.reset("resumed without a position", channel)
            sub.channel_position_reached(channel, message.get("last_event_id"))
            if not self.pending and not self.was_live:
                self.was_live = True
                sub.went_live()
        elif kind == "message":
            await sub.message(Message(message["channel"], message["from"], message["data"]))
        elif kind == "unsubscribed" and message.get("reason") == "forbidden":
            # Access ended (removed from the board, board deleted): stop, as SSE does.
            return Ended(4403, f"access to {message['channel']} ended", self.was_live)
        elif kind == "error" and message.get("code") == "reset":
            await sub.reset(str(message.get("detail")), self.last_subscribed)
        return None
