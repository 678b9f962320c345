"""Who is connecting: a Bearer access token in the Authorization header, or a ticket."""

from starlette.requests import HTTPConnection

from realtime_service.tickets import Identity, redeem_ticket
from servicekit.db import Database
from servicekit.errors import InvalidToken, NotAuthenticated
from servicekit.jwks import TokenVerifier
from servicekit.security import verify_access_token


async def identity_from_token(verifier: TokenVerifier, token: str) -> Identity:
    claims = await verify_access_token(verifier, token)
    return Identity(claims.user_id, claims.expires_at)


async def identify(connection: HTTPConnection, ticket: str | None) -> Identity:
    """From the Authorization header, else the `ticket` query parameter. Access tokens in the
    URL are never looked at."""
    authorization = connection.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise NotAuthenticated()
        return await identity_from_token(connection.app.state.token_verifier, token.strip())
    if ticket is not None:
        database: Database = connection.app.state.db
        async with database.acquire() as db:
            identity = await redeem_ticket(db, ticket)
        if identity is None:
            raise InvalidToken("The ticket is unknown, used or expired")
        return identity
    raise NotAuthenticated()
