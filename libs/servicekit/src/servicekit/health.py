"""Liveness (`/healthz`) and readiness (`/readyz`, which runs the checks a service registers)."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from servicekit.errors import error_response

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
"""Raises when the service is not ready; returning means ready."""

CHECK_TIMEOUT_SECONDS = 2.0


class Health:
    def __init__(self) -> None:
        self.checks: dict[str, ReadinessCheck] = {}
        self.draining = False
        # Logged when a check starts failing and when it recovers, not on every probe.
        self.failing: set[str] = set()

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    async def failing_checks(self) -> list[str]:
        names = list(self.checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.checks[name](), CHECK_TIMEOUT_SECONDS) for name in names),
            return_exceptions=True,
        )
        failing = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if name not in self.failing:
                    logger.warning(
                        "readiness check failed",
                        extra={"check": name, "err": type(result).__name__},
                    )
                failing.append(name)
            elif name in self.failing:
                logger.info("readiness check passes again", extra={"check": name})
        self.failing = set(failing)
        return failing


router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    health: Health = request.app.state.health
    if health.draining:
        return error_response(503, "not_ready", ["draining"])
    failing = await health.failing_checks()
    if failing:
        return error_response(503, "not_ready", failing)
    return JSONResponse({"status": "ready", "checks": sorted(health.checks)})
