"""The inbox vacuums itself, whatever autovacuum does.

The inbox (`eventlog.event_inbox`) is a queue: every event is inserted once and deleted once
by the sequencer, so the table holds few live rows and, left to itself, ever more dead ones. On
the machine of issue 21 autovacuum was off: the empty inbox held 103k dead tuples (43 MB), every
scan of it (the sequencer's poll, its batch, the backlog probe) read them all, and stale
statistics pushed the batch statement into JIT compilation.

Design: every api replica checks the inbox's dead tuples every `inbox_vacuum_check_seconds`
(the statistics PostgreSQL keeps whether or not autovacuum runs) and runs a plain
`VACUUM (SKIP_LOCKED, ANALYZE)` when they pass `inbox_vacuum_dead_rows`. A plain vacuum takes no
lock that writers or the sequencer wait for, and with the bound small it reads little and takes
milliseconds; SKIP_LOCKED makes a replica skip a round while another one vacuums. ANALYZE keeps
the inbox's statistics current too. Chosen over rotating partitions with TRUNCATE (as PgQ
does): no schema change, no rotation protocol between the sequencer and writers, and the table
stays small as long as the bound is. Like any vacuum it cannot remove rows a long-running
transaction may still see; that transaction already shows as sequencer lag.
"""

import asyncio
import logging

from prometheus_client import Counter

from eventlog.tables import INBOX
from servicekit.db import Database
from servicekit.supervisor import Heartbeat

logger = logging.getLogger(__name__)

VACUUMS = Counter("api_outbox_inbox_vacuums", "Vacuums of the event inbox run by this replica")

_DEAD_TUPLES = f"SELECT pg_stat_get_dead_tuples('{INBOX}'::regclass)"
_VACUUM = f"VACUUM (SKIP_LOCKED, ANALYZE) {INBOX}"


async def vacuum_inbox_when_needed(database: Database, threshold: int) -> bool:
    """Vacuum the inbox if its dead tuples are past `threshold`; whether it did."""
    async with database.acquire() as connection:
        dead: int = await connection.fetchval(_DEAD_TUPLES)
        if dead < threshold:
            return False
        await connection.execute(_VACUUM)
    VACUUMS.inc()
    logger.info("event inbox vacuumed", extra={"dead_tuples": dead})
    return True


async def vacuum_inbox_periodically(
    database: Database, dead_rows: int, check_seconds: float, heartbeat: Heartbeat
) -> None:
    """Vacuum past `dead_rows` dead tuples, checked every `check_seconds`, until cancelled
    (supervised); a failure raises and the supervisor restarts it."""
    while True:
        await vacuum_inbox_when_needed(database, dead_rows)
        heartbeat.beat()
        await asyncio.sleep(check_seconds)
