"""Opaque keyset cursors: the (created_at, id) of the last item of a page, newest first."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import Query
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import DateTime, FromClause, Select, Uuid, bindparam, tuple_

from servicekit import pagination
from servicekit.pagination import InvalidCursor

Limit = Annotated[int, Query(ge=1, le=100, description="Items per page")]
Cursor = Annotated[
    str | SkipJsonSchema[None],
    Query(
        max_length=200,
        description="next_cursor of the last page (opaque: anything else is 400 invalid_cursor)",
    ),
]

# The position before the newest row, so that the first page is the same query as the others.
_START = (datetime(9999, 12, 31, tzinfo=UTC), uuid.UUID(int=(1 << 128) - 1))


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    return pagination.encode_cursor(f"{created_at.isoformat()}|{item_id}")


def decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID]:
    if cursor is None:
        return _START
    position = pagination.decode_cursor(cursor)
    try:
        created_at_text, item_id_text = position.split("|")
        created_at = datetime.fromisoformat(created_at_text)
        item_id = uuid.UUID(item_id_text)
        if created_at.tzinfo is None:
            raise ValueError("a cursor's timestamp carries its offset")
        # Well-formed, yet outside what a datetime (and so the driver) can hold once in UTC,
        # e.g. 9999-12-31T23:59:59-23:59.
        created_at = created_at.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidCursor() from exc
    return created_at, item_id


def newest_first_page(query: Select[Any], table: FromClause) -> Select[Any]:
    """`query` restricted to one page: newest first, after the position given by the
    parameters `after_created_at` and `after_id`, at most `limit` rows. `table` is a Core table
    or a mapped class's `__table__`."""
    after = tuple_(
        bindparam("after_created_at", type_=DateTime(timezone=True)),
        bindparam("after_id", type_=Uuid),
    )
    return (
        query.where(tuple_(table.c.created_at, table.c.id) < after)
        .order_by(table.c.created_at.desc(), table.c.id.desc())
        .limit(bindparam("limit"))
    )


def page_params(limit: int, cursor: str | None) -> dict[str, Any]:
    """Parameters for `newest_first_page`: one row more than the page, to tell whether another
    page follows."""
    after_created_at, after_id = decode_cursor(cursor)
    return {"after_created_at": after_created_at, "after_id": after_id, "limit": limit + 1}


def next_cursor(rows: Sequence[Any], limit: int) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last["created_at"], last["id"])


class Positioned(Protocol):
    """A mapped object a page is made of."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


def next_cursor_of(items: Sequence[Positioned], limit: int) -> str | None:
    """`next_cursor` for mapped objects (the ORM path) rather than rows."""
    if len(items) <= limit:
        return None
    last = items[limit - 1]
    return encode_cursor(last.created_at, last.id)
