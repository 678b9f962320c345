"""the event log moves into a schema of its own, `eventlog`

api-service's migrations 0001-0003 created the inbox, the log, the sequencer lease and the prune
watermark in the schema `api`. Each moves here as it is (ALTER TABLE ... SET SCHEMA): its rows,
ids, indexes, constraints and the inbox's identity sequence move with it, so every event keeps
its id and the sequencer continues from `sequenced_through`. Runs after api-service's
migrations, whose history creates the tables, on a new database and on an upgrade alike.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "eventlog"
FORMER_SCHEMA = "api"
TABLES = ("event_inbox", "events", "sequencer_lease", "outbox_state")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {FORMER_SCHEMA}.{table} SET SCHEMA {SCHEMA}")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {SCHEMA}.{table} SET SCHEMA {FORMER_SCHEMA}")
