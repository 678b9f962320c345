from fastapi import FastAPI
from prometheus_client import Gauge
from prometheus_fastapi_instrumentator import Instrumentator

# Defined once per process (the instrumentator's own would be registered again by every app a
# test builds). Kept by the request-context middleware; SSE streams count while they are open.
REQUESTS_IN_PROGRESS = Gauge("http_requests_inprogress", "HTTP requests being handled")


def instrument(app: FastAPI, *, streaming: bool = False) -> None:
    """HTTP RED metrics at `/metrics`.

    Unmatched paths are not recorded (a scanner must not create a series per random URL), and a
    streaming service excludes the stream's lifetime from the latency histogram.
    """
    Instrumentator(
        should_ignore_untemplated=True,
        should_group_status_codes=False,
        excluded_handlers=["/metrics"],
        should_exclude_streaming_duration=streaming,
    ).instrument(app).expose(app, include_in_schema=False)
