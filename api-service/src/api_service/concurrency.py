"""Optimistic concurrency: `version` out as `ETag: "<version>"`, `If-Match` in."""

import re
from typing import Annotated, Any

from fastapi import Header, Response
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import ARRAY, Integer, Table, any_, bindparam, delete, func, or_, update
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.dml import ReturningDelete, ReturningUpdate

from api_service.errors import InvalidIfMatch

_ENTITY_TAG = re.compile(r'\s*"(\d{1,9})"\s*')

# The pattern documents what is accepted (a malformed one is 400 invalid_if_match, checked by
# `expected_versions`); optional, never null.
IfMatch = Annotated[
    str | SkipJsonSchema[None],
    Header(
        max_length=1000,
        json_schema_extra={"pattern": '^\\s*(\\*|"[0-9]{1,9}"(\\s*,\\s*"[0-9]{1,9}")*)\\s*$'},
    ),
]


def expected_versions(if_match: str | None) -> list[int] | None:
    """The versions the client accepts; None when it sent no precondition (or `*`)."""
    if if_match is None or if_match.strip() == "*":
        return None
    versions = []
    for tag in if_match.split(","):
        matched = _ENTITY_TAG.fullmatch(tag)
        if matched is None:
            raise InvalidIfMatch()
        versions.append(int(matched.group(1)))
    return versions


def etag(version: int) -> str:
    return f'"{version}"'


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def _version_matches(table: Table) -> ColumnElement[bool]:
    """True when the `versions` parameter is null (no If-Match) or holds the row's version."""
    versions = bindparam("versions", type_=ARRAY(Integer))
    return or_(versions.is_(None), table.c.version == any_(versions))


def versioned_update(table: Table, values: dict[str, Any]) -> ReturningUpdate[Any]:
    """UPDATE the row `id`, bumping its version, RETURNING it; it matches no row when the
    version is not one the client expects (the caller answers 412)."""
    return (
        update(table)
        .where(table.c.id == bindparam("id"), _version_matches(table))
        .values(**values, version=table.c.version + 1, updated_at=func.now())
        .returning(table)
    )


def versioned_delete(table: Table) -> ReturningDelete[Any]:
    return (
        delete(table)
        .where(table.c.id == bindparam("id"), _version_matches(table))
        .returning(table.c.id)
    )
