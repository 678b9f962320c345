"""Routes of passkeys: registration by a signed-in user, sign-in by anyone, and the account's
list of passkeys."""

import uuid
from typing import Any

from fastapi import APIRouter, Response, status

from auth_service import metrics
from auth_service.dependencies import CurrentUser, PasskeysDep
from auth_service.errors import PasskeyRefused
from auth_service.schemas import PasskeyOut, PasskeyRegistration, PasskeySignIn, TokenResponse
from servicekit.errors import error_responses

router = APIRouter(prefix="/auth", tags=["auth"])
NO_STORE = {"Cache-Control": "no-store"}


@router.post(
    "/passkeys/register/options",
    response_model=dict[str, Any],
    responses=error_responses(401, 503),
)
async def registration_options(user: CurrentUser, passkeys: PasskeysDep, response: Response) -> Any:
    """PublicKeyCredentialCreationOptions (JSON) for navigator.credentials.create(); the
    challenge works once, for this user, for PASSKEY_CHALLENGE_TTL_SECONDS."""
    response.headers.update(NO_STORE)
    return await passkeys.registration_options(user)


@router.post(
    "/passkeys",
    status_code=status.HTTP_201_CREATED,
    response_model=PasskeyOut,
    responses=error_responses(400, 401, 409, 422, 503),
)
async def register(body: PasskeyRegistration, user: CurrentUser, passkeys: PasskeysDep) -> Any:
    """Registers the credential the browser created with those options, under `name`."""
    return await passkeys.register(user, body.name, body.credential)


@router.post(
    "/passkeys/sign-in/options", response_model=dict[str, Any], responses=error_responses(503)
)
async def sign_in_options(passkeys: PasskeysDep, response: Response) -> Any:
    """PublicKeyCredentialRequestOptions (JSON) for navigator.credentials.get(), with no
    allowCredentials: the authenticator offers its discoverable credentials."""
    response.headers.update(NO_STORE)
    return await passkeys.sign_in_options()


@router.post(
    "/passkeys/sign-in",
    response_model=TokenResponse,
    responses=error_responses(400, 422, 503),
)
async def sign_in(body: PasskeySignIn, passkeys: PasskeysDep, response: Response) -> Any:
    """Tokens for a passkey assertion: a session like any other (refresh, logout)."""
    response.headers.update(NO_STORE)
    try:
        pair = await passkeys.sign_in(body.credential)
    except PasskeyRefused:
        metrics.SIGN_INS.labels(method="passkey", outcome="refused").inc()
        raise
    metrics.SIGN_INS.labels(method="passkey", outcome="success").inc()
    return TokenResponse(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )


@router.get(
    "/users/me/passkeys", response_model=list[PasskeyOut], responses=error_responses(401, 503)
)
async def list_passkeys(user: CurrentUser, passkeys: PasskeysDep) -> Any:
    return await passkeys.list(user.id)


@router.delete(
    "/users/me/passkeys/{passkey_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(401, 404, 409, 422, 503),
)
async def delete_passkey(
    passkey_id: uuid.UUID, user: CurrentUser, passkeys: PasskeysDep
) -> Response:
    """Refused (409 `last_sign_in_method`) when it is the account's only way to sign in."""
    await passkeys.delete(user, passkey_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
