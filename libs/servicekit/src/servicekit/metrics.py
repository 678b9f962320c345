from collections.abc import Callable
from functools import cache

from fastapi import FastAPI
from prometheus_client import Gauge
from prometheus_fastapi_instrumentator import Instrumentator, metrics

# Defined once per process (the instrumentator's own would be registered again by every app a
# test builds). Kept by the request-context middleware; SSE streams count while they are open.
REQUESTS_IN_PROGRESS = Gauge("http_requests_inprogress", "HTTP requests being handled")


@cache
def _http_metrics() -> Callable[[metrics.Info], None]:
    """The instrumentator's default metrics, registered once per process and shared by every
    app in it (a second registration would make the instrumentator record nothing).

    Latency is measured until the response starts, so an SSE stream's lifetime stays out of
    the histogram; for other responses the body follows at once."""
    instrumentation = metrics.default(should_exclude_streaming_duration=True)
    assert instrumentation is not None, "HTTP metrics registered outside servicekit.metrics"
    return instrumentation


def instrument(app: FastAPI) -> None:
    """HTTP RED metrics at `/metrics`. Unmatched paths are not recorded (a scanner must not
    create a series per random URL)."""
    Instrumentator(
        should_ignore_untemplated=True,
        should_group_status_codes=False,
        excluded_handlers=["/metrics"],
    ).add(_http_metrics()).instrument(app).expose(app, include_in_schema=False)
