"""One error base class and the handlers that render every error as `{"error", "detail"}`."""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from servicekit.jsondepth import MAX_JSON_DEPTH

logger = logging.getLogger(__name__)

ErrorDetail = str | list[Any]


class FieldIssue(BaseModel):
    """One problem with one field of a request: where (`["body", "title"]`), what, which kind."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error the stack answers: a machine-readable code, and a message or, for a
    request field the server refused, a list naming each field."""

    error: str
    detail: str | list[FieldIssue]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route answers, all with `ErrorBody`."""
    return {
        status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


def field_issue(location: str, field: str, message: str, kind: str) -> list[dict[str, Any]]:
    """A `detail` naming one field, in the shape of a validation error's."""
    return [{"loc": [location, field], "msg": message, "type": kind}]


class ServiceError(Exception):
    """An expected failure; subclasses pick the status code and the machine-readable code."""

    status_code: ClassVar[int] = 400
    error: ClassVar[str] = "bad_request"
    default_detail: ClassVar[str] = "Bad request"

    def __init__(
        self, detail: ErrorDetail | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.detail: ErrorDetail = detail if detail is not None else self.default_detail
        self.headers = dict(headers or {})
        super().__init__(str(self.detail))


class NotAuthenticated(ServiceError):
    status_code = 401
    error = "not_authenticated"
    default_detail = "Authentication required"

    def __init__(self, detail: ErrorDetail | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class InvalidToken(ServiceError):
    status_code = 401
    error = "invalid_token"
    default_detail = "The access token is invalid or expired"

    def __init__(self, detail: ErrorDetail | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class Forbidden(ServiceError):
    status_code = 403
    error = "forbidden"
    default_detail = "You may not do this"


class NotFound(ServiceError):
    status_code = 404
    error = "not_found"
    default_detail = "Not found"


class Conflict(ServiceError):
    status_code = 409
    error = "conflict"
    default_detail = "Conflict"


class PreconditionFailed(ServiceError):
    status_code = 412
    error = "precondition_failed"
    default_detail = "The resource has changed since you read it"


def error_response(
    status_code: int,
    error: str,
    detail: ErrorDetail,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "detail": detail}, status_code=status_code, headers=headers
    )


def _code_for_status(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _service_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status_code, exc.error, exc.detail, exc.headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path (Starlette's 405 names only the
    methods of the first route that matched the path; FastAPI has a route per method)."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


async def _http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError | RecursionError):
        # FastAPI's 400 for a JSON body that is not UTF-8 or nests too deep to parse: bad
        # input in the body, a 422 naming it like any other.
        message = f"the body must be JSON in UTF-8, nested at most {MAX_JSON_DEPTH} levels"
        issue = {"loc": ["body"], "msg": message, "type": "json_invalid"}
        return error_response(422, "validation_error", [issue])
    detail = exc.detail if isinstance(exc.detail, str | list) else str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return error_response(exc.status_code, _code_for_status(exc.status_code), detail, headers)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The validation errors without the input values: they may be huge or secret (passwords)."""
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in jsonable_encoder(exc.errors())
    ]


async def _validation_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "validation_error", validation_errors(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Unhandled exceptions are turned into a 500 by the request-context middleware."""
    app.add_exception_handler(ServiceError, _service_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
