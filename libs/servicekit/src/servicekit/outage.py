"""The database being unreachable: told apart from bugs, answered 503 (HTTP) or 1011
(WebSocket), and logged once per outage rather than with a traceback per request."""

import logging

import asyncpg
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

# What asyncpg raises when the server is gone, going or refusing connections: class 08
# (connection exceptions), 57P01-03 (shutdown, crash, starting up) and 53300 (too many
# connections). Connecting to a stopped server is an OSError (refused, reset, timed out).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether `exc`, or what caused it (SQLAlchemy wraps the driver's errors), says the
    database cannot be reached."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNAVAILABLE):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, asyncpg.InterfaceError) and "connection is closed" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


class _Outage:
    """Whether this process is in an outage, so that it is logged when it starts and ends."""

    def __init__(self) -> None:
        self.ongoing = False

    def began(self, exc: BaseException) -> None:
        if not self.ongoing:
            self.ongoing = True
            logger.warning(
                "database unavailable: answering 503 until it is back",
                extra={"err": type(exc).__name__},
            )

    def ended(self) -> None:
        if self.ongoing:
            self.ongoing = False
            logger.info("database available again")


outage = _Outage()
"""The process's one outage state: an outage is the database's, not a request's."""
