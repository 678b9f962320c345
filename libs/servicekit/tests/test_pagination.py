import base64

import pytest

from servicekit.pagination import InvalidCursor, decode_cursor, encode_cursor


@pytest.mark.parametrize("position", ["", "a", "ab", "2026-12-01T00:00:00+00:00|x", "é" * 50])
def test_a_cursor_gives_back_its_position(position: str) -> None:
    cursor = encode_cursor(position)
    assert "=" not in cursor
    assert decode_cursor(cursor) == position


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "a",
        "a+b/",
        base64.urlsafe_b64encode(b"a\x00b").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode("\ud800".encode("utf-8", "surrogatepass")).decode(),
    ],
)
def test_anything_else_is_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as refused:
        decode_cursor(cursor)
    assert (refused.value.status_code, refused.value.error) == (400, "invalid_cursor")
