"""Opaque keyset cursors: the (created_at, id) of the last item of a page, newest first."""

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Row, Select, Table, tuple_

from api_service.errors import InvalidCursor

Limit = Annotated[int, Query(ge=1, le=100, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the last page")]


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{item_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at_text, item_id_text = raw.split("|")
        created_at = datetime.fromisoformat(created_at_text)
        item_id = uuid.UUID(item_id_text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor() from exc
    if created_at.tzinfo is None:
        raise InvalidCursor()
    return created_at, item_id


def newest_first_page(
    query: Select[Any], table: Table, limit: int, cursor: str | None
) -> Select[Any]:
    """`query` restricted to one page: newest first, after the cursor, one extra row to tell
    whether another page follows."""
    query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1)
    if cursor is not None:
        query = query.where(tuple_(table.c.created_at, table.c.id) < decode_cursor(cursor))
    return query


def next_cursor(rows: Sequence[Row[Any]], limit: int) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last.created_at, last.id)
