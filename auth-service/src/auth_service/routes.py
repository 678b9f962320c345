from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from auth_service.dependencies import AuthServiceDep, CurrentUser, OidcSignInDep
from auth_service.errors import LoginThrottled, OAuthError, invalid_request
from auth_service.oidc.flows import SIGN_IN_CODE_GRANT
from auth_service.schemas import (
    JwksResponse,
    LogoutRequest,
    RegisterRequest,
    TokenResponse,
    UpdateMeRequest,
    UserOut,
)
from servicekit.errors import ErrorBody, error_responses
from servicekit.schemas import Text
from servicekit.security import CurrentClaims

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthErrorRoute(APIRoute):
    """Answers every failure of the token endpoint, malformed forms included, the RFC 6749 way
    (400 with `error` and `error_description`) instead of the stack's usual 422 body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_with_oauth_errors(request: Request) -> Response:
            try:
                return await handle(request)
            except LoginThrottled as exc:
                return JSONResponse(
                    {"error": exc.error, "error_description": exc.description},
                    status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                    headers={**NO_STORE, "Retry-After": str(exc.retry_after)},
                )
            except OAuthError as exc:
                error, description = exc.error, exc.description
            except RequestValidationError:
                error, description = "invalid_request", "The form is malformed"
            except HTTPException as exc:
                if exc.status_code != status.HTTP_400_BAD_REQUEST:
                    raise
                error, description = "invalid_request", "The request body could not be parsed"
            return JSONResponse(
                {"error": error, "error_description": description},
                status_code=status.HTTP_400_BAD_REQUEST,
                headers=NO_STORE,
            )

        return handle_with_oauth_errors


router = APIRouter(prefix="/auth", tags=["auth"])
token_router = APIRouter(prefix="/auth", tags=["auth"], route_class=OAuthErrorRoute)


class OAuthErrorBody(BaseModel):
    """RFC 6749 §5.2."""

    error: Literal[
        "invalid_request", "invalid_grant", "unsupported_grant_type", "too_many_attempts"
    ]
    error_description: str


OptionalFormField = Annotated[Text | None, Form()]


# 429: the gateway rate-limits registration and the token endpoint.
@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=error_responses(409, 422, 429, 503),
)
async def register(body: RegisterRequest, auth: AuthServiceDep) -> Any:
    return await auth.register(body)


@token_router.post(
    "/token",
    response_model=TokenResponse,
    responses={
        400: {"model": OAuthErrorBody, "description": "RFC 6749 §5.2 error body"},
        # Throttled per account (RFC 6749-style body, see Retry-After) or per address by the
        # gateway (the shared error body).
        429: {"model": OAuthErrorBody | ErrorBody, "description": "Too many attempts"},
        **error_responses(503),
    },
)
async def token(
    response: Response,
    auth: AuthServiceDep,
    oidc: OidcSignInDep,
    grant_type: OptionalFormField = None,
    username: OptionalFormField = None,
    password: OptionalFormField = None,
    refresh_token: OptionalFormField = None,
    code: OptionalFormField = None,
) -> TokenResponse:
    """OAuth2 token endpoint: `password` grant (username is the email), `refresh_token`, or
    `sign_in_code` (the one-time `code` of a sign-in through an OpenID provider)."""
    response.headers.update(NO_STORE)
    if grant_type == "password":
        if not username or password is None:
            raise invalid_request("username and password are required")
        pair = await auth.login(username, password)
    elif grant_type == "refresh_token":
        if not refresh_token:
            raise invalid_request("refresh_token is required")
        pair = await auth.refresh(refresh_token)
    elif grant_type == SIGN_IN_CODE_GRANT:
        if not code:
            raise invalid_request("code is required")
        pair = await oidc.redeem_sign_in_code(code)
    elif not grant_type:
        raise invalid_request("grant_type is required")
    else:
        supported = f"password, refresh_token, {SIGN_IN_CODE_GRANT}"
        raise OAuthError("unsupported_grant_type", f"Supported: {supported}")
    return TokenResponse(
        access_token=pair.access_token,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(422, 503))
async def logout(body: LogoutRequest, auth: AuthServiceDep) -> None:
    """Ends the session the refresh token belongs to. Unknown tokens are accepted silently, so
    the answer reveals nothing about a token."""
    await auth.logout(body.refresh_token)


@router.get("/users/me", response_model=UserOut, responses=error_responses(401, 503))
async def read_me(user: CurrentUser) -> Any:
    return user


@router.patch("/users/me", response_model=UserOut, responses=error_responses(401, 403, 422, 503))
async def update_me(
    body: UpdateMeRequest, user: CurrentUser, claims: CurrentClaims, auth: AuthServiceDep
) -> Any:
    """A password change needs `current_password` and ends the user's other sessions."""
    return await auth.update_me(user, claims.session_id, body)


@router.get("/.well-known/jwks.json", response_model=JwksResponse, responses=error_responses(503))
async def jwks(request: Request, response: Response) -> JwksResponse:
    keyset = request.app.state.signing_keys.keyset
    response.headers["Cache-Control"] = "public, max-age=60"
    return JwksResponse(keys=await keyset.current_jwks())
