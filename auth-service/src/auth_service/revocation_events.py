"""auth-service's events in the log: a user's tokens revoked (deactivation, password reset) or
restored (reactivation), so resource servers stop honouring access tokens within seconds.

They are written through the log's writer (eventlog.writer) on the request's ORM session, in
the transaction that makes the change, so the event exists exactly when the change committed;
the sequencer numbers them into the log with every other event. Their types are declared in
eventlog.revocations, the contract between auth-service and the resource servers
(docs/contract.md §6).
"""

import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from eventlog.revocations import DEACTIVATED, REACTIVATED, SESSIONS_REVOKED
from eventlog.types import EventType
from eventlog.writer import Event, append_events

__all__ = ["DEACTIVATED", "REACTIVATED", "SESSIONS_REVOKED", "append_revocation"]


async def append_revocation(
    session: AsyncSession, event_type: EventType, user_id: uuid.UUID, actor_id: uuid.UUID
) -> None:
    data: dict[str, object] = {"user_id": str(user_id)}
    if event_type in (SESSIONS_REVOKED, REACTIVATED):
        # Tokens issued before this are refused (after a reactivation: those from before the
        # deactivation). Whole seconds by auth's clock, as `iat` is: a token issued in this
        # second before the change is still honoured, so that one issued in it after the
        # change (a new login) is too.
        data["issued_before"] = int(time.time())
    await append_events(session, actor_id, [Event(f"user:{user_id}", event_type, data)])
