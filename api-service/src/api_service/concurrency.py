"""Optimistic concurrency: `version` out as `ETag: "<version>"`, `If-Match` in."""

import re
from typing import Annotated, Any

from fastapi import Header, Response
from sqlalchemy import Table, Update, delete, func, update
from sqlalchemy.sql.dml import ReturningDelete

from api_service.errors import InvalidIfMatch

_ENTITY_TAG = re.compile(r'\s*"(\d{1,9})"\s*')

IfMatch = Annotated[str | None, Header(max_length=1000)]


def expected_versions(if_match: str | None) -> set[int] | None:
    """The versions the client accepts; None when it sent no precondition (or `*`)."""
    if if_match is None or if_match.strip() == "*":
        return None
    versions = set()
    for tag in if_match.split(","):
        matched = _ENTITY_TAG.fullmatch(tag)
        if matched is None:
            raise InvalidIfMatch()
        versions.add(int(matched.group(1)))
    return versions


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


def versioned_update(
    table: Table, row_id: object, changes: dict[str, object], versions: set[int] | None
) -> Update:
    """UPDATE ... RETURNING the row, bumping its version; it matches no row when the version is
    not one the client expects (the caller answers 412)."""
    statement = (
        update(table)
        .where(table.c.id == row_id)
        .values(**changes, version=table.c.version + 1, updated_at=func.now())
        .returning(table)
    )
    if versions is not None:
        statement = statement.where(table.c.version.in_(versions))
    return statement


def versioned_delete(
    table: Table, row_id: object, versions: set[int] | None
) -> ReturningDelete[tuple[Any]]:
    statement = delete(table).where(table.c.id == row_id).returning(table.c.id)
    if versions is not None:
        statement = statement.where(table.c.version.in_(versions))
    return statement
