"""JSON logs, one object a line, each carrying the id of the request it belongs to."""

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of msg
}


# A URL path's query string: uvicorn logs WebSocket paths with theirs
# (`"WebSocket /realtime/ws?ticket=..." [accepted]`), and tickets travel there.
_QUERY_STRING = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")


def without_query_strings(text: str) -> str:
    """`text` with the query string of every URL path in it cut off."""
    return _QUERY_STRING.sub(r"\1", text) if "?" in text else text


class JsonFormatter(logging.Formatter):
    """One JSON object a line. No query string of a URL path reaches it: they carry tickets."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": without_query_strings(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = without_query_strings(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route every logger, uvicorn's included, through one JSON handler on stderr.

    uvicorn's own access log is switched off: the request-context middleware writes one access
    line per request with its request id instead.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
