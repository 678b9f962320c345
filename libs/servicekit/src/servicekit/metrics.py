from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator


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
        should_instrument_requests_inprogress=True,
        inprogress_labels=True,
    ).instrument(app).expose(app, include_in_schema=False)
