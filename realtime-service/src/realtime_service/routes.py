from fastapi import APIRouter, Request, status
from pydantic import BaseModel

from realtime_service.config import Settings
from realtime_service.tickets import Identity, issue_ticket
from servicekit.db import Database
from servicekit.errors import error_responses
from servicekit.security import CurrentClaims

router = APIRouter(prefix="/realtime", tags=["realtime"])


class TicketOut(BaseModel):
    ticket: str
    expires_in: int


@router.post("/tickets", status_code=status.HTTP_201_CREATED, responses=error_responses(401, 503))
async def create_ticket(request: Request, claims: CurrentClaims) -> TicketOut:
    """A one-time ticket for `?ticket=` on /realtime/sse or /realtime/ws: valid once, for
    `expires_in` seconds, on any replica. The connection it opens ends when the access token
    it was issued for expires."""
    settings: Settings = request.app.state.settings
    database: Database = request.app.state.db
    identity = Identity(claims.user_id, claims.expires_at)
    async with database.acquire() as connection:
        ticket = await issue_ticket(connection, identity, settings.ticket_ttl_seconds)
    return TicketOut(ticket=ticket, expires_in=settings.ticket_ttl_seconds)
