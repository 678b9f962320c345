"""Retention: events older than the retention are deleted, and the watermark `pruned_through`
records the highest id removed, so a reader with an older cursor knows it missed events."""

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from eventlog.tables import LOG, WATERMARK
from servicekit.db import Database
from servicekit.supervisor import Heartbeat

logger = logging.getLogger(__name__)

_PRUNE_LOCK = 0x7072756E65  # "prune"
_PRUNE_BATCH = 10_000

_PRUNE = text(
    f"WITH pruned AS (DELETE FROM {LOG} WHERE id IN (SELECT id FROM {LOG}"
    " WHERE created_at < now() - CAST(:retention AS interval)"
    " ORDER BY id LIMIT :batch) RETURNING id)"
    f" UPDATE {WATERMARK} SET pruned_through ="
    " GREATEST(pruned_through, (SELECT max(id) FROM pruned))"
    " WHERE EXISTS (SELECT 1 FROM pruned)"
    " RETURNING (SELECT count(*) FROM pruned)"
)


async def prune_events(engine: AsyncEngine, retention: timedelta) -> int:
    """Delete events older than `retention`, in batches; a no-op unless this replica wins the
    prune lock, so one replica prunes at a time."""
    deleted = 0
    while True:
        async with engine.begin() as conn:
            if not await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _PRUNE_LOCK}
            ):
                return deleted
            result = await conn.execute(_PRUNE, {"retention": retention, "batch": _PRUNE_BATCH})
            batch_deleted = result.scalar() or 0
        deleted += batch_deleted
        if batch_deleted < _PRUNE_BATCH:
            return deleted


async def prune_events_periodically(
    database: Database, retention: timedelta, interval: float, heartbeat: Heartbeat
) -> None:
    """Prune every `interval` seconds, until cancelled (supervised)."""
    while True:
        try:
            deleted = await prune_events(database.engine, retention)
            if deleted:
                logger.info("pruned events", extra={"deleted": deleted})
            heartbeat.beat()
        except Exception:
            logger.exception("event pruning failed")
        await asyncio.sleep(interval)
