"""HTTP RED metrics, recorded by the request-context middleware, and `/metrics`.

The metrics are prometheus-fastapi-instrumentator's defaults, with the same names, labels and
buckets (the dashboards and alert rules read them), but recorded without its middleware: that
middleware resolved the route again on every request by walking every route of the app, and
built a `Request`, a `Response` and an `Info` per request: 15-20% of api-service's CPU per
create-task. The router has resolved the route by the time the response is sent, and leaves
it in the scope."""

from collections.abc import Iterable

from fastapi import FastAPI
from prometheus_client import Counter, Gauge, Histogram, Summary
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.requests import HTTPConnection
from starlette.types import Scope

# Defined once per process, shared by every app in it (a test builds many).
REQUESTS_IN_PROGRESS = Gauge("http_requests_inprogress", "HTTP requests being handled")
REQUESTS = Counter(
    "http_requests_total",
    "Total number of requests by method, status and handler.",
    ["method", "status", "handler"],
)
REQUEST_SIZE = Summary(
    "http_request_size_bytes",
    "Content length of incoming requests by handler. Only value of header is respected."
    " Otherwise ignored. No percentile calculated. ",
    ["handler"],
)
RESPONSE_SIZE = Summary(
    "http_response_size_bytes",
    "Content length of outgoing responses by handler. Only value of header is respected."
    " Otherwise ignored. No percentile calculated. ",
    ["handler"],
)
LATENCY_HIGHR = Histogram(
    "http_request_duration_highr_seconds",
    "Latency with many buckets but no API specific labels."
    " Made for more accurate percentile calculations. ",
    buckets=(
        *(0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5),
        *(7.5, 10, 30, 60, float("inf")),
    ),
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Latency with only few buckets by handler."
    " Made to be only used if aggregation by handler is important. ",
    ["method", "handler"],
    buckets=(0.1, 0.5, 1, float("inf")),
)


def _handler_of(scope: Scope, request_scope: Scope) -> str | None:
    """The templated path of the route that handled the request (`/api/tasks/{task_id}`); None
    for a path no route matched, which is not recorded (a scanner must not create a series per
    random URL). `scope` is the request's scope once the app has handled it, `request_scope` a
    copy taken before routing changed it."""
    route = scope.get("route")
    if route is not None:
        path: str = route.path
        return path
    # Mounts, trailing-slash redirects and unmatched paths (rare): resolved as the
    # instrumentator resolves them, against the scope as it arrived. A redirect comes back
    # named by the path as requested (`/api/tasks/<any id>/`): not recorded, or a scanner would
    # make one series per URL.
    name = get_route_name(HTTPConnection(request_scope), should_include_root_path=False)
    return None if name == request_scope["path"] else name


def observe_request(
    scope: Scope, request_scope: Scope, status: int, duration: float, response_size: int
) -> None:
    """Record one HTTP request. `duration` runs until the response started, so that an SSE
    stream's lifetime stays out of the latency histograms."""
    handler = _handler_of(scope, request_scope)
    # Scrapes are left out, as the instrumentator was told to.
    if handler is None or "/metrics" in handler:
        return
    method: str = scope["method"]
    REQUESTS.labels(method, str(status), handler).inc()
    REQUEST_SIZE.labels(handler).observe(content_length(scope["headers"]))
    RESPONSE_SIZE.labels(handler).observe(response_size)
    LATENCY_HIGHR.observe(duration)
    LATENCY.labels(method, handler).observe(duration)


def content_length(headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The Content-Length of a request's or response's raw headers; 0 without one."""
    for name, value in headers:
        if name == b"content-length":
            # The server has parsed it already; an app's odd header must not fail the request.
            return int(value) if value.isdigit() else 0
    return 0


def instrument(app: FastAPI) -> None:
    """`/metrics`, outside the API's schema."""
    Instrumentator().expose(app, include_in_schema=False)
