"""Routes of the account lifecycle: administration, members by email, OIDC discovery."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from auth_service import administration, lifecycle
from auth_service.dependencies import AuthServiceDep
from auth_service.errors import TooManyRequests
from auth_service.mail import MailRequest
from auth_service.models import User
from auth_service.schemas import (
    AdminUserUpdate,
    ForgotPasswordRequest,
    MemberOut,
    OpenIdConfiguration,
    ResetPasswordRequest,
    UserOut,
    UserPageOut,
    VerifyEmailRequest,
)
from auth_service.throttle import spend_lookup
from servicekit.db import SessionDep
from servicekit.errors import NotFound
from servicekit.schemas import Text
from servicekit.security import CurrentUserId

router = APIRouter(prefix="/auth", tags=["auth"])

ERROR = {"description": "Error body `{error, detail}`"}


async def current_admin(user_id: CurrentUserId, session: SessionDep) -> User:
    return await administration.require_admin(session, user_id)


AdminDep = Annotated[User, Depends(current_admin)]


@router.get(
    "/admin/users",
    response_model=UserPageOut,
    responses={400: ERROR, 401: ERROR, 403: ERROR},
)
async def list_users(
    _: AdminDep,
    session: SessionDep,
    email: Annotated[Text | None, Query(max_length=254)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[Text | None, Query(max_length=400)] = None,
) -> Any:
    """Users in email order; `email` filters on a prefix of the address (case-insensitive)."""
    return await administration.list_users(session, email, limit, cursor)


@router.patch(
    "/admin/users/{user_id}",
    response_model=UserOut,
    responses={401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
)
async def update_user(
    user_id: uuid.UUID, body: AdminUserUpdate, admin: AdminDep, auth: AuthServiceDep
) -> Any:
    """Set `is_active` / `is_admin`; deactivation ends every session of the user at once."""
    return await administration.update_user(auth, admin, user_id, body)


@router.get(
    "/users/lookup",
    response_model=MemberOut,
    responses={401: ERROR, 404: ERROR, 429: ERROR},
)
async def lookup_by_email(
    email: Annotated[Text, Query(min_length=3, max_length=254)],
    user_id: CurrentUserId,
    session: SessionDep,
    request: Request,
) -> Any:
    """Exact, case-insensitive match on an active account's email: `{id, display_name}`, else
    404. Rate-limited per user (it would otherwise enumerate accounts)."""
    retry_after = await spend_lookup(
        session, user_id, request.app.state.settings.lookups_per_minute
    )
    # Committed now: a 404 or 429 rolls back the request's transaction, and a miss is the
    # lookup that most needs counting.
    await session.commit()
    if retry_after is not None:
        raise TooManyRequests(retry_after)
    user = await administration.find_by_email(session, email)
    if user is None:
        raise NotFound("No account with this email")
    return user


@router.get("/.well-known/openid-configuration", response_model=OpenIdConfiguration)
async def openid_configuration(request: Request) -> OpenIdConfiguration:
    """Discovery (OpenID Connect Discovery 1.0 / RFC 8414), so standard resource-server
    libraries find the issuer, the keys and the token endpoint."""
    issuer: str = request.app.state.settings.jwt_issuer.rstrip("/")
    return OpenIdConfiguration(
        issuer=issuer,
        jwks_uri=f"{issuer}/.well-known/jwks.json",
        token_endpoint=f"{issuer}/token",
        grant_types_supported=["password", "refresh_token"],
        response_types_supported=["token"],
        subject_types_supported=["public"],
        id_token_signing_alg_values_supported=["RS256"],
        token_endpoint_auth_methods_supported=["none"],
        scopes_supported=[],
        claims_supported=["iss", "sub", "aud", "exp", "iat", "jti", "sid"],
    )


@router.post(
    "/email/verify-request",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses={401: ERROR},
)
async def request_verification(
    user_id: CurrentUserId, auth: AuthServiceDep, request: Request
) -> Response:
    """Mails a verification link (one-time, 24 h) unless the address is verified already."""
    user = await auth.get_user(user_id)
    request.app.state.mailer.submit(MailRequest(lifecycle.VERIFY, user_id=user.id))
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/email/verify", response_model=UserOut, responses={400: ERROR})
async def verify_email(body: VerifyEmailRequest, session: SessionDep) -> Any:
    return await lifecycle.verify_email(session, body.token)


@router.post("/password/forgot", status_code=status.HTTP_202_ACCEPTED, response_class=Response)
async def forgot_password(body: ForgotPasswordRequest, request: Request) -> Response:
    """202 whatever the email: the account is looked up by a mail worker after the answer,
    so the answer's content and timing say nothing about it. Sends a reset link (one-time,
    30 min) when the email has an active account."""
    request.app.state.mailer.submit(MailRequest(lifecycle.RESET, email=str(body.email)))
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/password/reset",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={400: ERROR},
)
async def reset_password(body: ResetPasswordRequest, auth: AuthServiceDep) -> Response:
    """Sets the password (registration's rules) and ends every session of the account."""
    await lifecycle.reset_password(auth, body.token, body.password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
