"""The stack's event log, and the only code that touches its tables.

- `eventlog.tables`: the inbox, the log, the sequencer lease and the prune watermark, in the
  schema `eventlog` (its own Alembic migrations, `eventlog/migrations`);
- `eventlog.types`: the registry of event types, declared where they are emitted;
- `eventlog.writer`: appending events (asyncpg, SQLAlchemy session, single-statement CTE);
- `eventlog.sequencer`: numbering settled inbox rows into the log, one leader at a time;
- `eventlog.reader`: reading the log (range, replay, watermark), and `eventlog.revocations`;
- `eventlog.bus`, `eventlog.publisher`: the NATS wire contract and the sequencer's publisher;
- `eventlog.backlog`, `eventlog.vacuum`, `eventlog.retention`: keeping the tables healthy.
"""

from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"
"""The log's Alembic migrations; they run after api-service's (docs/contract.md)."""
