"""The log's tables, in the schema `eventlog`, as SQLAlchemy Core (the metadata its migrations
are checked against).

- `event_inbox`: where writers insert events, in their own transaction, tagged with its id;
- `events`: the log, numbered densely by the sequencer in commit order;
- `sequencer_lease`: one row, the sequencer's lease and the log's head (`sequenced_through`);
- `outbox_state`: one row, the highest id pruning has removed.
"""

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.types import UserDefinedType

SCHEMA = "eventlog"
metadata = MetaData(schema=SCHEMA)


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id, which SQLAlchemy does not know."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "xid8"


# So that reflecting the inbox (alembic check) recognises the column's type.
ischema_names["xid8"] = Xid8

inbox = Table(
    "event_inbox",
    metadata,
    # Rows are ordered by (xid, seq): the writing transaction's id, then insertion order in it.
    Column("xid", Xid8(), nullable=False, server_default=func.pg_current_xact_id()),
    Column("seq", BigInteger, Identity(always=True), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("type", String(32), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("actor_id", Uuid, nullable=False),
    Column(
        "created_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
    PrimaryKeyConstraint("xid", "seq"),
)

events = Table(
    "events",
    metadata,
    # Numbered by the sequencer (eventlog.sequencer), densely, in the order it settles events;
    # nothing else inserts here.
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("channel", String(64), nullable=False),
    Column("type", String(32), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("actor_id", Uuid, nullable=False),
    Column(
        "created_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
)
Index("events_channel_id_idx", events.c.channel, events.c.id)
Index("events_created_at_idx", events.c.created_at)

lease = Table(
    "sequencer_lease",
    metadata,
    Column("singleton", Boolean, primary_key=True, server_default=text("true")),
    Column("holder", Text, nullable=False, server_default=""),
    Column("epoch", BigInteger, nullable=False, server_default=text("0")),
    Column(
        "expires_at", DateTime(timezone=True), nullable=False, server_default=text("'-infinity'")
    ),
    Column("sequenced_through", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("singleton", name="sequencer_lease_singleton"),
)

# A reader whose cursor is below `pruned_through` has missed events for good and must start
# over (realtime answers `reset`).
outbox_state = Table(
    "outbox_state",
    metadata,
    Column("singleton", Boolean, primary_key=True, server_default=text("true")),
    Column("pruned_through", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("singleton", name="outbox_state_singleton"),
)

# Qualified names for the statements this package composes from SQL fragments.
INBOX = f"{SCHEMA}.{inbox.name}"
LOG = f"{SCHEMA}.{events.name}"
LEASE = f"{SCHEMA}.{lease.name}"
WATERMARK = f"{SCHEMA}.{outbox_state.name}"
