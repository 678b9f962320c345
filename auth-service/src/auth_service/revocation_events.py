"""auth-service's events in the log: a user's tokens revoked (deactivation, password reset) or
restored (reactivation), so resource servers stop honouring access tokens within seconds.

They enter the log the way api-service's own do: inserted into `api.event_inbox` in the
transaction that makes the change (so the event exists exactly when the change committed), and
numbered into `api.events` by api-service's sequencer, which keeps the log the one source of
order. The inbox's columns are the contract between the two services (docs/contract.md
§6); the stack migrates both schemas into one database.
"""

import json
import time
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.revocations import DEACTIVATED, REACTIVATED, SESSIONS_REVOKED

__all__ = ["DEACTIVATED", "REACTIVATED", "SESSIONS_REVOKED", "append_revocation"]

# Raw SQL: the table belongs to api-service's schema, not to auth's models.
_APPEND = text(
    "INSERT INTO api.event_inbox (channel, type, data, actor_id)"
    " VALUES (:channel, :type, CAST(:data AS jsonb), :actor_id)"
)


async def append_revocation(
    session: AsyncSession, event_type: str, user_id: uuid.UUID, actor_id: uuid.UUID
) -> None:
    data: dict[str, object] = {"user_id": str(user_id)}
    if event_type in (SESSIONS_REVOKED, REACTIVATED):
        # Tokens issued before this are refused (after a reactivation: those from before the
        # deactivation). Whole seconds by auth's clock, as `iat` is: a token issued in this
        # second before the change is still honoured, so that one issued in it after the
        # change (a new login) is too.
        data["issued_before"] = int(time.time())
    await session.execute(
        _APPEND,
        {
            "channel": f"user:{user_id}",
            "type": event_type,
            "data": json.dumps(data),
            "actor_id": actor_id,
        },
    )
