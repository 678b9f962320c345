"""Request context: request id in and out, one access log line, the HTTP metrics, and the
last-resort 503 (database unreachable) or 500."""

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.errors import error_response
from servicekit.logging import request_id_var
from servicekit.metrics import REQUESTS_IN_PROGRESS, content_length, observe_request
from servicekit.outage import RETRY_AFTER_SECONDS, is_database_unavailable, outage

logger = logging.getLogger("servicekit.access")

REQUEST_ID_HEADER = "x-request-id"
_WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Probes and scrapes would drown the access log.
_QUIET_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER.encode():
            candidate: str = value.decode("latin-1")
            if _WELL_FORMED_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware) so that streaming responses pass through untouched.

    It sits inside Starlette's ServerErrorMiddleware, so it catches unhandled exceptions itself:
    that way even a 500 carries the request id and the `{"error", "detail"}` body, and the
    metrics count the status the client got.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        token = request_id_var.set(request_id)
        # Routing rewrites the scope (a mount's root_path); the metrics resolve a route the
        # router did not name against the scope as it arrived.
        request_scope = dict(scope)
        started = time.perf_counter()
        status = 0
        # Until the response starts: an SSE stream's lifetime stays out of the latency.
        response_started = 0.0
        response_size = 0

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started, response_size
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = time.perf_counter()
                response_size = content_length(message.get("headers", ()))
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        in_progress = scope["type"] == "http" and scope.get("path") not in _QUIET_PATHS
        if in_progress:
            REQUESTS_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:
            if is_database_unavailable(exc):
                outage.began(exc)
                response = error_response(
                    503,
                    "unavailable",
                    "The database is unreachable: retry later",
                    {"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            else:
                logger.exception("unhandled error")
                response = error_response(500, "internal_error", "Internal server error")
            if scope["type"] == "http" and status == 0:
                await response(scope, receive, send_with_request_id)
        finally:
            if in_progress:
                REQUESTS_IN_PROGRESS.dec()
            path = scope.get("path", "")
            if scope["type"] == "http" and path not in _QUIET_PATHS:
                logger.info(
                    "request",
                    extra={
                        "method": scope.get("method"),
                        "path": path,
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id_var.reset(token)
            if scope["type"] == "http":
                observe_request(
                    scope,
                    request_scope,
                    # A request that ended without a response (the client went away) counts
                    # as a 500.
                    status or 500,
                    response_started - started if status else 0.0,
                    response_size,
                )
