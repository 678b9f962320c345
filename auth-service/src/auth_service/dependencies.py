from typing import Annotated

from fastapi import Depends, Request

from auth_service.models import User
from auth_service.oidc.flows import OidcSignIn
from auth_service.passkeys import Passkeys
from auth_service.service import AuthService
from servicekit.db import SessionDep
from servicekit.security import CurrentClaims


async def get_auth_service(request: Request, session: SessionDep) -> AuthService:
    state = request.app.state
    return AuthService(session, state.settings, state.signing_keys, state.passwords)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def current_user(claims: CurrentClaims, auth: AuthServiceDep) -> User:
    return await auth.current_user(claims)


CurrentUser = Annotated[User, Depends(current_user)]


async def get_oidc_sign_in(
    request: Request, session: SessionDep, auth: AuthServiceDep
) -> OidcSignIn:
    state = request.app.state
    return OidcSignIn(session, state.settings, state.oidc_providers, auth)


OidcSignInDep = Annotated[OidcSignIn, Depends(get_oidc_sign_in)]


async def get_passkeys(request: Request, session: SessionDep, auth: AuthServiceDep) -> Passkeys:
    return Passkeys(session, request.app.state.settings, auth)


PasskeysDep = Annotated[Passkeys, Depends(get_passkeys)]
