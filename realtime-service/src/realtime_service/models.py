"""The `realtime` schema: only one-time tickets. Events and memberships are read from `api`."""

from sqlalchemy import Column, DateTime, Index, LargeBinary, MetaData, Table, Uuid

SCHEMA = "realtime"
metadata = MetaData(schema=SCHEMA)

tickets = Table(
    "tickets",
    metadata,
    Column("ticket_hash", LargeBinary, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("token_expires_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
Index("tickets_expires_at_idx", tickets.c.expires_at)
