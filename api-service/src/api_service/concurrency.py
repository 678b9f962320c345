"""Optimistic concurrency: `version` out as `ETag: "<version>"`, `If-Match` in."""

import re
from typing import Annotated

from fastapi import Header, Response

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
