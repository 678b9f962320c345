"""Routes of the account lifecycle: administration, members by email, OIDC discovery."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from auth_service import administration, lifecycle
from auth_service.dependencies import AuthServiceDep, CurrentUser
from auth_service.errors import TooManyRequests
from auth_service.mail import MailRequest
from auth_service.models import User
from auth_service.oidc.flows import SIGN_IN_CODE_GRANT
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
from servicekit.errors import NotFound, error_responses
from servicekit.schemas import Text

router = APIRouter(prefix="/auth", tags=["auth"])


async def current_admin(user: CurrentUser) -> User:
    return administration.require_admin(user)


AdminDep = Annotated[User, Depends(current_admin)]


@router.get(
    "/admin/users",
    response_model=UserPageOut,
    responses=error_responses(400, 401, 403, 422, 503),
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
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def update_user(
    user_id: uuid.UUID, body: AdminUserUpdate, admin: AdminDep, auth: AuthServiceDep
) -> Any:
    """Set `is_active` / `is_admin`; deactivation ends every session of the user at once."""
    return await administration.update_user(auth, admin, user_id, body)


@router.get(
    "/users/lookup",
    response_model=MemberOut,
    responses=error_responses(401, 404, 422, 429, 503),
)
async def lookup_by_email(
    email: Annotated[Text, Query(min_length=3, max_length=254)],
    caller: CurrentUser,
    session: SessionDep,
    request: Request,
) -> Any:
    """Exact, case-insensitive match on an active account's email: `{id, display_name}`, else
    404. Rate-limited per user (it would otherwise enumerate accounts)."""
    retry_after = await spend_lookup(
        session, caller.id, request.app.state.settings.lookups_per_minute
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
        grant_types_supported=["password", "refresh_token", SIGN_IN_CODE_GRANT],
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
    responses=error_responses(401, 429, 503),
)
async def request_verification(user: CurrentUser, request: Request) -> Response:
    """Mails a verification link (one-time, 24 h) unless the address is verified already."""
    request.app.state.mailer.submit(MailRequest(lifecycle.VERIFY, user_id=user.id))
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/email/verify", response_model=UserOut, responses=error_responses(400, 422, 503))
async def verify_email(body: VerifyEmailRequest, session: SessionDep) -> Any:
    return await lifecycle.verify_email(session, body.token)


@router.post(
    "/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=error_responses(422, 429),
)
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
    responses=error_responses(400, 422, 503),
)
async def reset_password(body: ResetPasswordRequest, auth: AuthServiceDep) -> Response:
    """Sets the password (registration's rules) and ends every session of the account."""
    await lifecycle.reset_password(auth, body.token, body.password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
