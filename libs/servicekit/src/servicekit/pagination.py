"""Opaque keyset cursors: the position after a page's last item, as text (each service picks
what it holds), carried as unpadded base64url so that clients treat it as opaque."""

import base64
import binascii

from servicekit.errors import ServiceError
from servicekit.schemas import storable_text


class InvalidCursor(ServiceError):
    error = "invalid_cursor"
    default_detail = "The cursor is malformed; use a next_cursor from a previous page"


def encode_cursor(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The position `cursor` holds; 400 `invalid_cursor` unless it is base64url of UTF-8 text
    PostgreSQL can compare (the bytes are the client's: they could hold NUL)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return storable_text(base64.b64decode(padded, altchars=b"-_", validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor() from exc
