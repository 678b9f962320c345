"""Server-Sent Events: `GET /realtime/sse?channels=...`."""

import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import APIKeyQuery
from pydantic.json_schema import SkipJsonSchema
from starlette.types import Receive, Scope, Send

from realtime_service import metrics
from realtime_service.channels import InvalidChannel, channel_name, parse_channel
from realtime_service.config import Settings
from realtime_service.event_ids import InvalidEventId, event_id_from_text
from realtime_service.events import LogEvent, sse_control
from realtime_service.hub import Hub, Subscriber
from realtime_service.identity import identify
from realtime_service.subscriptions import Opened, open_channels, replay
from realtime_service.tickets import Identity
from servicekit.db import Database
from servicekit.errors import ServiceError, error_responses, field_issue
from servicekit.security import bearer_scheme

router = APIRouter(prefix="/realtime", tags=["realtime"])

TOKEN_EXPIRED = 4001


class InvalidChannels(ServiceError):
    """A 422 like a validation error's: its detail names the field."""

    status_code = 422
    error = "invalid_channels"

    def __init__(self, message: str) -> None:
        super().__init__(field_issue("query", "channels", message, "invalid_channels"))


class InvalidLastEventId(ServiceError):
    status_code = 422
    error = "invalid_last_event_id"

    def __init__(self, location: str, field: str) -> None:
        message = "must be an event id: ASCII digits, at most 2**63 - 1"
        super().__init__(field_issue(location, field, message, "invalid_last_event_id"))


def parse_channels(raw: str, limit: int) -> list[str]:
    names = [part for part in raw.split(",") if part.strip()]
    if not names or len(names) > limit:
        raise InvalidChannels(f"Give between 1 and {limit} channels")
    try:
        return sorted({channel_name(*parse_channel(name)) for name in names})
    except InvalidChannel as exc:
        raise InvalidChannels(str(exc)) from exc


def parse_last_event_id(header: str | None, query: str | None) -> int | None:
    raw = header if header is not None else query
    if raw is None:
        return None
    try:
        return event_id_from_text(raw)
    except InvalidEventId as exc:
        if header is not None:
            raise InvalidLastEventId("header", "Last-Event-ID") from exc
        raise InvalidLastEventId("query", "last_event_id") from exc


# The two ways in, declared for the OpenAPI document (either one: a Bearer access token, or a
# one-time ticket in the query); `identify` reads them, the header first.
ticket_scheme = APIKeyQuery(
    name="ticket",
    scheme_name="ticket",
    description="A one-time ticket from `POST /realtime/tickets`, for clients that cannot send"
    " an Authorization header (EventSource)",
    auto_error=False,
)


@router.get(
    "/sse",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        **error_responses(401, 403, 422, 503),
    },
    dependencies=[Depends(bearer_scheme), Depends(ticket_scheme)],
)
async def sse(
    request: Request,
    channels: Annotated[
        str, Query(min_length=1, max_length=2000, description="board:<id>,user:<id>,...")
    ],
    last_event_id: Annotated[
        str | SkipJsonSchema[None], Query(max_length=20, pattern="^[0-9]{1,19}$")
    ] = None,
    ticket: Annotated[str | SkipJsonSchema[None], Query(max_length=4096)] = None,
    last_event_id_header: Annotated[
        str | SkipJsonSchema[None],
        Header(alias="Last-Event-ID", max_length=20, pattern="^[0-9]{1,19}$"),
    ] = None,
) -> StreamingResponse:
    """Events of the given channels. Resume with `Last-Event-ID` (header, or `last_event_id`)."""
    settings: Settings = request.app.state.settings
    identity = await identify(request, ticket)
    names = parse_channels(channels, settings.max_channels)
    cursor = parse_last_event_id(last_event_id_header, last_event_id)
    hub: Hub = request.app.state.hub
    database: Database = request.app.state.db
    subscriber = Subscriber(identity.user_id, "sse", settings.queue_limit)
    try:
        async with database.acquire() as connection:
            opened = await open_channels(hub, connection, subscriber, names, cursor)
    except BaseException:
        hub.remove(subscriber)
        raise
    replayed = replay(hub, database, opened, names)
    return EventStreamResponse(
        _stream(subscriber, identity, opened, replayed, settings),
        on_close=lambda: hub.remove(subscriber),
    )


class EventStreamResponse(StreamingResponse):
    """A `text/event-stream` response that always runs `on_close`, even when the client is
    gone before the stream's first byte (the generator's own `finally` would never run)."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def _deliver(events: list[LogEvent], after: int) -> tuple[bytes, int]:
    now = time.time()
    frames = []
    for event in events:
        if event.id > after:
            frames.append(event.sse)
            after = event.id
            metrics.DELIVERY_LATENCY.observe(max(0.0, now - event.committed_at))
    metrics.EVENTS_DELIVERED_BY_TRANSPORT["sse"].inc(len(frames))
    return b"".join(frames), after


async def _stream(
    subscriber: Subscriber,
    identity: Identity,
    opened: Opened,
    replayed: AsyncIterator[list[LogEvent]],
    settings: Settings,
) -> AsyncIterator[bytes]:
    metrics.CONNECTIONS.labels(transport="sse").inc()
    ends_at = identity.expires_at - settings.sse_expiry_margin_seconds
    last_sent = 0
    try:
        yield f"retry: {settings.sse_retry_ms}\n\n".encode()
        if opened.reset:
            yield sse_control("reset", {"reason": "the cursor is outside the event log"})
        async for batch in replayed:
            frames, last_sent = _deliver(batch, last_sent)
            yield frames
        # The log position the stream is live from: a client that had no cursor resumes here.
        ready = {"channels": sorted(subscriber.channels), "last_event_id": opened.replay_through}
        yield sse_control("ready", ready)
        while True:
            remaining = ends_at - time.time()
            if remaining <= 0:
                subscriber.close(TOKEN_EXPIRED, "token expired: reconnect with a new ticket")
            await subscriber.wait(min(settings.heartbeat_seconds, max(remaining, 0.0)))
            events = [item for item in subscriber.take() if isinstance(item, LogEvent)]
            frames, last_sent = _deliver(events, last_sent)
            if subscriber.close_reason is not None:
                code, reason = subscriber.close_reason
                metrics.DISCONNECTS.labels(transport="sse", code=str(code)).inc()
                yield frames + sse_control("disconnect", {"code": code, "reason": reason})
                return
            revoked = subscriber.take_revoked()
            if revoked:
                metrics.DISCONNECTS.labels(transport="sse", code="4403").inc()
                reason = f"access to {', '.join(revoked)} ended"
                yield frames + sse_control("disconnect", {"code": 4403, "reason": reason})
                return
            yield frames or b": heartbeat\n\n"
    finally:
        metrics.CONNECTIONS.labels(transport="sse").dec()
