import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from auth_service import account_routes, routes
from auth_service.config import Settings
from auth_service.housekeeping import prune_periodically
from auth_service.keys import SigningKeys
from auth_service.lifecycle import prepare_mail
from auth_service.mail import Mailer
from auth_service.passwords import PasswordHasher
from servicekit.app import create_service_app
from servicekit.db import Database
from servicekit.security import token_verifier_for


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        signing_keys = SigningKeys(settings, database.sessionmaker)
        await signing_keys.start()
        app.state.db = database
        app.state.signing_keys = signing_keys
        app.state.passwords = PasswordHasher(settings)
        mailer = Mailer(settings, partial(prepare_mail, database.sessionmaker, settings))
        mailer.start()
        app.state.mailer = mailer
        housekeeping = asyncio.create_task(
            prune_periodically(database.sessionmaker, settings), name="housekeeping"
        )
        # auth-service verifies its own tokens from the database's key set, not over HTTP.
        app.state.token_verifier = token_verifier_for(settings, signing_keys.keyset)
        app.state.health.add_check("database", database.check)
        app.state.health.add_check("signing_keys", signing_keys.keyset.ensure_loaded)
        try:
            yield
        finally:
            housekeeping.cancel()
            await mailer.stop()
            await database.dispose()

    return create_service_app(
        title="auth-service",
        description="Registration, OAuth2 password login, rotating refresh tokens, JWKS.",
        prefix="/auth",
        settings=settings,
        routers=[routes.router, routes.token_router, account_routes.router],
        lifespan=lifespan,
    )


app = create_app()
