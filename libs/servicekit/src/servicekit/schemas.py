"""Request schemas shared by every service: what a request may carry, checked once, here."""

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

# PostgreSQL's text cannot hold NUL, and a lone surrogate (JSON's "\ud800") has no UTF-8 form:
# either would fail in the database, after the request was accepted.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> str:
    """`value` unchanged, or a validation error (422 naming the field) when PostgreSQL could
    not store it."""
    if _UNSTORABLE.search(value):
        raise ValueError("text may not contain NUL characters or unpaired surrogates")
    return value


# What the OpenAPI schemas say of every string a request may carry. (JSON Schema cannot speak
# of unpaired surrogates, which generators do not make.)
NO_NUL_PATTERN = "^[^\x00]*$"

VISIBLE_TEXT_PATTERN = "^[^\x00]*[^\\s\x00][^\x00]*$"
"""For names and titles that are stripped of whitespace and may not end up empty."""

Text = Annotated[
    str,
    AfterValidator(storable_text),
    WithJsonSchema({"type": "string", "pattern": NO_NUL_PATTERN}),
]
"""A string parameter (query, header, form field) PostgreSQL can store; request bodies built
on `StrictModel` check every string field without it."""


def _storable_strings(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _storable_strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable_strings(key)
            _storable_strings(item)
    return value


def _offer_no_null(schema: dict[str, Any]) -> None:
    variants = [variant for variant in schema.pop("anyOf", []) if variant.get("type") != "null"]
    if len(variants) == 1:
        schema.update(variants[0])
    else:
        schema["anyOf"] = variants


NOT_NULL = Field(json_schema_extra=_offer_no_null)
"""For a body field that may be left out but not sent as null: its schema does not offer
null (the model refuses it with a validator)."""


def _document_no_nul(schema: dict[str, Any]) -> None:
    for field in schema.get("properties", {}).values():
        for variant in [field, *field.get("anyOf", [])]:
            if variant.get("type") == "string" and not {"format", "enum", "pattern"} & set(variant):
                variant["pattern"] = NO_NUL_PATTERN


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped, and no string field
    holds text PostgreSQL cannot store (the schema says so)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_no_nul)

    @field_validator("*", mode="after")
    @classmethod
    def _text_is_storable(cls, value: Any) -> Any:
        return _storable_strings(value)
