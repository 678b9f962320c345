"""The app factory every service starts from, so that they all look and behave alike."""

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import StatelessLifespan

from servicekit import health
from servicekit.docs import install_docs
from servicekit.errors import install_error_handlers
from servicekit.logging import configure_logging
from servicekit.metrics import instrument
from servicekit.middleware import RequestContextMiddleware
from servicekit.settings import ServiceSettings

_TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def tune_garbage_collector() -> None:
    """Fewer, later collections, and none over what exists once the service has started.

    The collector's defaults cost about a sixth of api-service's CPU under load: a request
    allocates enough to trigger young collections continually, and full ones walk every
    object the imported libraries keep. In realtime-service, whose thousands of long-lived
    connections each full collection walks, they made the p99 delivery latency (230 ms
    against 60 ms). See bench/README.md."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


def _tuning_collector_after(
    lifespan: StatelessLifespan[FastAPI] | None,
) -> StatelessLifespan[FastAPI]:
    @asynccontextmanager
    async def service_lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            tune_garbage_collector()
            yield

    return service_lifespan


def create_service_app(
    *,
    title: str,
    prefix: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    lifespan: StatelessLifespan[FastAPI] | None = None,
    description: str = "",
) -> FastAPI:
    """A FastAPI app with the stack's conventions: docs under the service's own prefix, JSON
    errors, request ids and JSON logs, `/metrics`, `/healthz` and `/readyz`; the garbage
    collector is tuned once `lifespan` has started the service."""
    configure_logging(settings.service_name, settings.log_level)
    app = FastAPI(
        title=title,
        description=description,
        # Swagger UI is served by install_docs, from assets installed with the service.
        docs_url=None,
        openapi_url=f"{prefix}/openapi.json",
        redoc_url=None,
        lifespan=_tuning_collector_after(lifespan),
        # The stack observes itself through Prometheus; with FastAPI's OpenTelemetry on, every
        # request would look up the tracer, meter and logger providers for nothing.
        telemetry=_TELEMETRY_OFF,
    )
    app.state.settings = settings
    app.state.health = health.Health()
    install_error_handlers(app)
    instrument(app)
    app.add_middleware(RequestContextMiddleware)
    # Routes are matched in order: the service's own come first, hottest first as `routers`
    # lists them, probes last.
    for router in routers:
        app.include_router(router)
    install_docs(app, prefix)
    app.include_router(health.router)
    return app
