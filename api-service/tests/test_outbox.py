"""The outbox contract (docs/contract.md §6): event ids increase in commit order, every
committed write has its events and no failed write has any. (With several api replicas:
test_sequencer.py.)"""

import asyncio
import random
from datetime import timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from api_service import tasks as tasks_module
from eventlog.reader import NOTIFY_CHANNEL
from eventlog.retention import prune_events

from .conftest import User, create_board, create_task, settled

WRITERS = 50
WRITES_PER_WRITER = 20


def asyncpg_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


async def board_event_ids(app: FastAPI, board_ids: list[str]) -> list[int]:
    async with app.state.db.engine.connect() as conn:
        rows = await conn.scalars(
            text("SELECT id FROM eventlog.events WHERE channel = ANY(:c) ORDER BY id"),
            {"c": [f"board:{b}" for b in board_ids]},
        )
        return list(rows)


async def test_reader_sees_every_committed_event_once_in_ascending_order(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User], database_url: str
) -> None:
    owner = user_pool[0]
    board_ids = [await create_board(client, owner, f"outbox {i}") for i in range(5)]
    channels = [f"board:{b}" for b in board_ids]
    await settled(app)
    start_id = max(await board_event_ids(app, board_ids))
    writers_done = asyncio.Event()
    seen: list[int] = []
    reads = 0

    async def reader() -> None:
        nonlocal reads
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        cursor = start_id
        try:
            while True:
                finished = writers_done.is_set()
                rows = await conn.fetch(
                    "SELECT id FROM eventlog.events"
                    " WHERE id > $1 AND channel = ANY($2) ORDER BY id",
                    cursor,
                    channels,
                )
                reads += 1
                ids = [row["id"] for row in rows]
                seen.extend(ids)
                if ids:
                    cursor = ids[-1]
                if finished:
                    return
                await asyncio.sleep(0)
        finally:
            await conn.close()

    async def writer(index: int) -> None:
        rng = random.Random(index)
        board_id = board_ids[index % len(board_ids)]
        task_ids: list[str] = []
        for _ in range(WRITES_PER_WRITER):
            if task_ids and rng.random() < 0.5:
                response = await client.patch(
                    f"/api/tasks/{rng.choice(task_ids)}",
                    json={"status": rng.choice(["todo", "doing", "done"])},
                    headers=owner.headers,
                )
                assert response.status_code == 200, response.text
            else:
                task_ids.append(str((await create_task(client, board_id, owner))["id"]))

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(i) for i in range(WRITERS)))
    await settled(app)
    writers_done.set()
    await reading

    committed = [i for i in await board_event_ids(app, board_ids) if i > start_id]
    assert len(committed) == WRITERS * WRITES_PER_WRITER
    assert seen == sorted(seen), "the reader saw ids out of order"
    assert len(seen) == len(set(seen)), "the reader saw an event twice"
    assert seen == committed, "the reader missed events that committed below its cursor"
    assert reads > 10, "the reader did not read concurrently with the writers"


async def test_writes_wake_listeners_with_the_highest_new_id(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User], database_url: str
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    await settled(app)  # the board's own event is sequenced (and notified) before listening
    notified: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    await conn.add_listener(NOTIFY_CHANNEL, lambda *args: notified.put_nowait(args[3]))
    try:
        await create_task(client, board_id, owner)
        payload = await asyncio.wait_for(notified.get(), 5)
    finally:
        await conn.close()
    assert int(payload) == max(await board_event_ids(app, [board_id]))


async def count_board_rows(app: FastAPI, board_id: str) -> tuple[int, int, int]:
    """Tasks, the sum of their versions (which any update changes) and events of a board."""
    await settled(app)
    async with app.state.db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM api.tasks WHERE board_id = CAST(:b AS uuid)),"
                    " (SELECT coalesce(sum(version), 0) FROM api.tasks"
                    "  WHERE board_id = CAST(:b AS uuid)),"
                    " (SELECT count(*) FROM eventlog.events WHERE channel = :c)"
                ),
                {"b": board_id, "c": f"board:{board_id}"},
            )
        ).one()
    return row[0], row[1], row[2]


async def test_failed_writes_leave_no_event(
    app: FastAPI,
    client: httpx.AsyncClient,
    user_pool: list[User],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner, viewer = user_pool[0], user_pool[2]
    board_id = await create_board(client, owner)
    task = await create_task(client, board_id, owner)
    before = await count_board_rows(app, board_id)

    stale = await client.patch(
        f"/api/tasks/{task['id']}",
        json={"title": "x"},
        headers={**owner.headers, "If-Match": '"5"'},
    )
    missing = await client.patch(
        "/api/tasks/00000000-0000-0000-0000-000000000000",
        json={"title": "x"},
        headers=owner.headers,
    )
    invalid = await client.post(
        f"/api/boards/{board_id}/tasks", json={"title": ""}, headers=owner.headers
    )
    forbidden = await client.post(
        f"/api/boards/{board_id}/tasks", json={"title": "t"}, headers=viewer.headers
    )
    assert [r.status_code for r in (stale, missing, invalid, forbidden)] == [412, 404, 422, 404]

    # Creating a task is one statement: when its event insert fails (here a constraint added
    # for the test), the task inserted earlier in that statement must go too.
    async with app.state.db.engine.begin() as conn:
        await conn.execute(
            text(
                "ALTER TABLE eventlog.event_inbox ADD CONSTRAINT test_no_created"
                " CHECK (type <> 'task.created') NOT VALID"
            )
        )
    try:
        violated_create = await client.post(
            f"/api/boards/{board_id}/tasks", json={"title": "t"}, headers=owner.headers
        )
    finally:
        async with app.state.db.engine.begin() as conn:
            await conn.execute(
                text("ALTER TABLE eventlog.event_inbox DROP CONSTRAINT test_no_created")
            )

    # Updating a task takes several statements: a constraint violation in the event insert
    # (channel longer than its column) must undo the update made earlier in the transaction.
    monkeypatch.setattr(tasks_module, "board_channel", lambda _: "board:" + "x" * 100)
    violated_update = await client.patch(
        f"/api/tasks/{task['id']}", json={"title": "changed"}, headers=owner.headers
    )
    monkeypatch.undo()

    # An exception after the task update, before the events.
    def explode(*_: object) -> None:
        raise RuntimeError("mid-transaction failure")

    monkeypatch.setattr(tasks_module, "append_events", explode)
    crashed = await client.patch(
        f"/api/tasks/{task['id']}", json={"title": "changed"}, headers=owner.headers
    )
    monkeypatch.undo()

    assert violated_create.status_code == 500
    assert violated_update.status_code == 500
    assert crashed.status_code == 500
    assert crashed.json() == {"error": "internal_error", "detail": "Internal server error"}
    assert await count_board_rows(app, board_id) == before
    unchanged = await client.get(f"/api/tasks/{task['id']}", headers=owner.headers)
    assert unchanged.json()["title"] == task["title"]


async def test_pruning_removes_only_old_events(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User]
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    await create_task(client, board_id, owner)
    await settled(app)
    async with app.state.db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE eventlog.events SET created_at = now() - interval '8 days'"
                " WHERE channel = :c"
            ),
            {"c": f"board:{board_id}"},
        )
    await create_task(client, board_id, owner)
    await settled(app)

    async with app.state.db.engine.connect() as conn:
        old_ids = list(
            await conn.scalars(
                text("SELECT id FROM eventlog.events WHERE created_at < now() - interval '7 days'")
            )
        )

    deleted = await prune_events(app.state.db.engine, timedelta(days=7))

    assert deleted == len(old_ids) >= 2
    assert (await count_board_rows(app, board_id))[2] == 1
    async with app.state.db.engine.connect() as conn:
        watermark = await conn.scalar(text("SELECT pruned_through FROM eventlog.outbox_state"))
    assert watermark == max(old_ids)


async def test_a_transaction_held_open_holds_later_events_back(
    app: FastAPI, client: httpx.AsyncClient, user_pool: list[User], database_url: str
) -> None:
    owner = user_pool[0]
    board_id = await create_board(client, owner)
    await settled(app)
    before = await board_event_ids(app, [board_id])
    held = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with held.transaction():
            # A transaction id, taken before the writes below: their rows are not settled
            # until this transaction ends.
            await held.fetchval("SELECT pg_current_xact_id()")
            titles = [f"held {i}" for i in range(5)]
            for title in titles:
                await create_task(client, board_id, owner, title=title)
            await asyncio.sleep(2.5)
            async with app.state.db.engine.connect() as conn:
                waiting = await conn.scalar(text("SELECT count(*) FROM eventlog.event_inbox"))
            assert await board_event_ids(app, [board_id]) == before
            assert waiting == len(titles)
            # Measured when scraped, by this replica, whatever its sequencer does.
            assert await scraped(client, "api_outbox_sequencer_lag_seconds") >= 1.0
            assert await scraped(client, "api_outbox_inbox_rows") == len(titles)
    finally:
        await held.close()
    await settled(app)
    async with app.state.db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, data ->> 'title' AS title FROM eventlog.events"
                    " WHERE channel = :c AND type = 'task.created' ORDER BY id"
                ),
                {"c": f"board:{board_id}"},
            )
        ).all()
    assert [row.title for row in rows] == titles
    assert rows[0].id > max(before)
    # Scraped after the rows have moved: an empty backlog, measured.
    await asyncio.sleep(0.6)  # past the probe's reuse of a measurement
    assert await scraped(client, "api_outbox_sequencer_lag_seconds") == 0
    assert await scraped(client, "api_outbox_inbox_rows") == 0
    assert await scraped(client, "api_outbox_backlog_probe_success") == 1


async def scraped(client: httpx.AsyncClient, name: str) -> float:
    """A sample of `/metrics` as Prometheus scrapes it (not the registry read in-process)."""
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise LookupError(name)
