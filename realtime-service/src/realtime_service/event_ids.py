"""Event ids clients send back (Last-Event-ID, `last_event_id`): ASCII digits or JSON
integers within PostgreSQL's bigint, nothing else (`str.isdigit` accepts "²" and "٣")."""

import re

MAX_EVENT_ID = 2**63 - 1
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")


class InvalidEventId(ValueError):
    pass


def event_id_from_text(raw: str) -> int:
    if not _ASCII_DIGITS.fullmatch(raw) or int(raw) > MAX_EVENT_ID:
        raise InvalidEventId(raw[:40])
    return int(raw)


def event_id_from_json(value: object) -> int:
    """A JSON message's event id: an integer, or a string of ASCII digits as SSE sends them."""
    if isinstance(value, str):
        return event_id_from_text(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EVENT_ID:
        raise InvalidEventId(repr(value)[:40])
    return value
