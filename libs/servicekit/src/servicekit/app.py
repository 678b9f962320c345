"""The app factory every service starts from, so that they all look and behave alike."""

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI
from starlette.types import Lifespan

from servicekit import health
from servicekit.errors import install_error_handlers
from servicekit.logging import configure_logging
from servicekit.metrics import instrument
from servicekit.middleware import RequestContextMiddleware
from servicekit.settings import ServiceSettings


def create_service_app(
    *,
    title: str,
    prefix: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    lifespan: Lifespan[FastAPI] | None = None,
    streaming: bool = False,
    description: str = "",
) -> FastAPI:
    """A FastAPI app with the stack's conventions: docs under the service's own prefix, JSON
    errors, request ids and JSON logs, `/metrics`, `/healthz` and `/readyz`."""
    configure_logging(settings.service_name, settings.log_level)
    app = FastAPI(
        title=title,
        description=description,
        docs_url=f"{prefix}/docs",
        openapi_url=f"{prefix}/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.health = health.Health()
    install_error_handlers(app)
    instrument(app, streaming=streaming)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health.router)
    for router in routers:
        app.include_router(router)
    return app
