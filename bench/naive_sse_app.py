"""The baseline for bench/realtime_fanout.py: a naive sse-starlette broadcast. One LISTEN
reader like realtime-service's, but every event is encoded once per subscriber and queued in
an unbounded per-subscriber queue. No auth, no replay."""

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI
from sse_starlette.sse import EventSourceResponse

from eventlog.tables import LOG

subscribers: set[asyncio.Queue[dict[str, Any]]] = set()


async def read_log(connection: asyncpg.Connection, wake: asyncio.Event) -> None:
    cursor = await connection.fetchval(f"SELECT coalesce(max(id), 0) FROM {LOG}")
    while True:
        await wake.wait()
        wake.clear()
        rows = await connection.fetch(
            "SELECT id, channel, type, data::text AS data, actor_id::text, created_at::text"
            f" FROM {LOG} WHERE id > $1 ORDER BY id",
            cursor,
        )
        for row in rows:
            cursor = row["id"]
            for queue in subscribers:
                queue.put_nowait(dict(row))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    dsn = os.environ["BENCH_DSN"]
    listener, reader = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    wake = asyncio.Event()
    await listener.add_listener("api_events", lambda *_: wake.set())
    task = asyncio.create_task(read_log(reader, wake))
    yield
    task.cancel()
    await listener.close()
    await reader.close()


app = FastAPI(lifespan=lifespan)


@app.get("/sse")
async def sse() -> EventSourceResponse:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    subscribers.add(queue)

    async def events() -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                row = await queue.get()
                yield {"id": str(row["id"]), "event": row["type"], "data": json.dumps(row)}
        finally:
            subscribers.discard(queue)

    return EventSourceResponse(events())


@app.get("/readyz")
async def ready() -> dict[str, bool]:
    return {"ok": True}
