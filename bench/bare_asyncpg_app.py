"""The ceiling for the api-service benchmark: a bare FastAPI app with an asyncpg pool, no auth,
no ORM, no events. `POST /insert` inserts one row like a task; `GET /ping` does nothing."""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from pydantic import BaseModel


class TaskIn(BaseModel):
    title: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    dsn = os.environ["BENCH_DSN"]
    async with asyncpg.create_pool(dsn, min_size=10, max_size=10) as pool:
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS bench_tasks (id uuid PRIMARY KEY, title text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/insert", status_code=201)
async def insert(body: TaskIn) -> dict[str, str]:
    row = await app.state.pool.fetchrow(
        "INSERT INTO bench_tasks (id, title) VALUES ($1, $2) RETURNING id, title, created_at",
        uuid.uuid4(),
        body.title,
    )
    return {"id": str(row["id"]), "title": row["title"], "created_at": str(row["created_at"])}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


@app.get("/readyz")
async def ready() -> dict[str, bool]:
    return {"ok": True}
