from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from auth_service import account_routes, passkey_routes, routes
from auth_service.config import Settings
from auth_service.housekeeping import prune_periodically
from auth_service.keys import SigningKeys
from auth_service.lifecycle import prepare_mail
from auth_service.mail import Mailer
from auth_service.oidc import routes as oidc_routes
from auth_service.oidc.flows import OidcProviders
from auth_service.passwords import PasswordHasher
from servicekit.app import create_service_app
from servicekit.db import CONNECTION_ERRORS, Database
from servicekit.security import token_verifier_for
from servicekit.supervisor import Supervisor


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        # Every background loop runs supervised: logged and restarted when it fails.
        loops = Supervisor()
        app.state.supervisor = loops
        signing_keys = SigningKeys(settings, database.sessionmaker)
        await signing_keys.start()
        app.state.db = database
        app.state.signing_keys = signing_keys
        app.state.passwords = PasswordHasher(settings)
        app.state.oidc_providers = OidcProviders(settings)
        mailer = Mailer(settings, partial(prepare_mail, database.sessionmaker, settings))
        mailer.start(loops)
        app.state.mailer = mailer
        loops.spawn(
            "housekeeping",
            partial(prune_periodically, database.sessionmaker, settings),
            essential=False,
            stale_after=3.0 * settings.housekeeping_interval_seconds + 60.0,
            transient=CONNECTION_ERRORS,
        )
        # auth-service verifies its own tokens from the database's key set, not over HTTP.
        app.state.token_verifier = token_verifier_for(settings, signing_keys.keyset)
        app.state.health.add_check("database", database.check)
        app.state.health.add_check("signing_keys", signing_keys.keyset.ensure_loaded)
        app.state.health.add_check("background_loops", loops.check)
        try:
            yield
        finally:
            await loops.stop()
            await app.state.oidc_providers.close()
            await database.dispose()

    return create_service_app(
        title="auth-service",
        description="Registration, OAuth2 password login, rotating refresh tokens, JWKS.",
        prefix="/auth",
        settings=settings,
        routers=[
            routes.router,
            routes.token_router,
            account_routes.router,
            oidc_routes.router,
            passkey_routes.router,
        ],
        lifespan=lifespan,
    )


app = create_app()
