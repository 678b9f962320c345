"""The conventions every service gets from create_service_app, exercised on a small app that
uses a real PostgreSQL database."""

import io
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import Field
from sqlalchemy import bindparam, column, select, table, text

from devstack.testing import asgi_client
from servicekit.app import create_service_app
from servicekit.db import Database, SessionDep, Statement, TransactionDep
from servicekit.errors import Conflict
from servicekit.logging import JsonFormatter
from servicekit.schemas import StrictModel
from servicekit.settings import ServiceSettings


class NoteIn(StrictModel):
    text: str = Field(min_length=1, max_length=10)
    stars: int = 0


router = APIRouter(prefix="/kit")


@router.post("/notes", status_code=201)
async def create_note(body: NoteIn, session: SessionDep) -> dict[str, str]:
    await session.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": body.text})
    if body.text == "conflict":
        raise Conflict("refused after writing")
    if body.text == "crash":
        raise RuntimeError("secret internals")
    return {"text": body.text}


INSERT_NOTE = Statement.of(text("INSERT INTO notes (body) VALUES (:body)"))
COMMITTED: list[str] = []


@router.post("/raw-notes", status_code=201)
async def create_raw_note(body: NoteIn, db: TransactionDep) -> dict[str, str]:
    await db.fetchval(INSERT_NOTE, body=body.text)
    db.after_commit(lambda: COMMITTED.append(body.text))
    if body.text == "conflict":
        raise Conflict("refused after writing")
    return {"text": body.text}


@router.get("/notes/{note_id}")
async def read_note(note_id: int) -> dict[str, int]:
    return {"id": note_id}


@pytest.fixture(scope="module")
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    settings = ServiceSettings(service_name="kit-test", database_url=database_url)
    database = Database(settings)
    async with database.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS notes (body text)"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = database
        app.state.health.add_check("database", database.check)
        yield
        await database.dispose()

    app = create_service_app(
        title="kit", prefix="/kit", settings=settings, routers=[router], lifespan=lifespan
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app, "http://kit") as client:
        yield client


async def count_notes(app: FastAPI, body: str) -> int:
    async with app.state.db.engine.connect() as conn:
        result = await conn.scalar(text("SELECT count(*) FROM notes WHERE body = :b"), {"b": body})
        return int(result or 0)


async def test_session_commits_on_success(app: FastAPI, client: httpx.AsyncClient) -> None:
    response = await client.post("/kit/notes", json={"text": "kept"})
    assert response.status_code == 201
    assert await count_notes(app, "kept") == 1


async def test_session_rolls_back_on_service_error(app: FastAPI, client: httpx.AsyncClient) -> None:
    response = await client.post("/kit/notes", json={"text": "conflict"})
    assert response.status_code == 409
    assert response.json() == {"error": "conflict", "detail": "refused after writing"}
    assert await count_notes(app, "conflict") == 0


async def test_transaction_commits_then_runs_after_commit_callbacks(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post("/kit/raw-notes", json={"text": "raw kept"})
    assert response.status_code == 201
    assert await count_notes(app, "raw kept") == 1
    assert "raw kept" in COMMITTED


async def test_transaction_rolls_back_and_skips_callbacks_on_error(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post("/kit/raw-notes", json={"text": "conflict"})
    assert response.status_code == 409
    assert await count_notes(app, "conflict") == 0
    assert "conflict" not in COMMITTED


def test_statement_binds_parameters_by_name_and_keeps_literals() -> None:
    notes = table("notes", column("body"), column("kind"))
    statement = Statement.of(
        select(notes.c.body).where(notes.c.kind == "fixed", notes.c.body == bindparam("body"))
    )
    assert statement.sql.count("$") == 2
    assert statement.args({"body": "x"}) == ["fixed", "x"]
    with pytest.raises(KeyError):
        statement.args({})


async def test_unhandled_error_is_a_json_500_without_internals(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post("/kit/notes", json={"text": "crash"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "Internal server error"}
    assert "secret internals" not in response.text
    assert response.headers["x-request-id"]
    assert await count_notes(app, "crash") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "x" * 11}, "text"),
        ({"text": ""}, "text"),
        ({}, "text"),
        ({"text": "ok", "stars": "many"}, "stars"),
        ({"text": "ok", "extra": 1}, "extra"),
    ],
)
async def test_validation_errors_name_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/kit/notes", json=body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["error"] == "validation_error"
    assert any(err["loc"][-1] == field for err in payload["detail"])
    assert all("input" not in err for err in payload["detail"])


async def test_malformed_json_is_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/kit/notes", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/kit/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "Not Found"}
    wrong_method = await client.delete("/kit/notes")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


async def test_path_parameter_of_wrong_type_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/kit/notes/not-a-number")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "note_id"]


async def test_request_id_is_echoed_when_well_formed(client: httpx.AsyncClient) -> None:
    response = await client.get("/kit/notes/1", headers={"X-Request-ID": "abc-123.trace:1"})
    assert response.headers["x-request-id"] == "abc-123.trace:1"


@pytest.mark.parametrize(
    "bad_id", [b"has space", b"x" * 129, b"", b'quote"s', "ünïcode".encode(), b"<script>"]
)
async def test_malformed_request_id_is_replaced(client: httpx.AsyncClient, bad_id: bytes) -> None:
    response = await client.get("/kit/notes/1", headers={"X-Request-ID": bad_id})
    generated = response.headers["x-request-id"]
    assert generated.encode() != bad_id
    assert len(generated) == 32
    assert generated.isalnum()


async def test_access_log_line_is_json_with_the_request_id(client: httpx.AsyncClient) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("kit-test"))
    access_logger = logging.getLogger("servicekit.access")
    access_logger.addHandler(handler)
    try:
        response = await client.get("/kit/notes/7?ticket=secret", headers={"X-Request-ID": "r-1"})
    finally:
        access_logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert response.status_code == 200
    assert lines, "no access line was written"
    entry = lines[-1]
    assert entry["request_id"] == "r-1"
    assert entry["service"] == "kit-test"
    assert entry["path"] == "/kit/notes/7"
    assert entry["status"] == 200
    assert "secret" not in stream.getvalue()


async def test_readiness_runs_registered_checks(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == ["database"]

    async def broken() -> None:
        raise ConnectionError("down")

    app.state.health.add_check("broken", broken)
    try:
        not_ready = await client.get("/readyz")
    finally:
        del app.state.health.checks["broken"]
    assert not_ready.status_code == 503
    assert not_ready.json() == {"error": "not_ready", "detail": ["broken"]}


async def test_docs_live_under_the_service_prefix(client: httpx.AsyncClient) -> None:
    assert (await client.get("/kit/openapi.json")).json()["info"]["title"] == "kit"
    page = await client.get("/kit/docs")
    assert page.status_code == 200
    assert (await client.get("/docs")).status_code == 404
    # Every asset the page names is served by the service itself, and no script is inline
    # (the gateway's Content-Security-Policy allows `script-src 'self'` only).
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == [
        f"/kit/docs/assets/{name}"
        for name in ("favicon.png", "swagger-init.js", "swagger-ui-bundle.js", "swagger-ui.css")
    ]
    for asset in assets:
        assert (await client.get(asset)).status_code == 200, asset
    assert "<script>" not in page.text


async def test_metrics_record_templated_routes_only(client: httpx.AsyncClient) -> None:
    await client.get("/kit/notes/42")
    await client.get("/kit/random-scanner-path-123")
    metrics = (await client.get("/metrics")).text
    assert 'handler="/kit/notes/{note_id}"' in metrics
    assert "random-scanner-path-123" not in metrics
    assert 'handler="/metrics"' not in metrics


def sample(metrics: str, name: str, labels: str) -> float:
    """The value of one sample in `/metrics` text; 0 when it is absent."""
    prefix = f"{name}{{{labels}}} "
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


async def test_metrics_name_and_size_requests_as_the_instrumentator_did(
    client: httpx.AsyncClient,
) -> None:
    # The handler label comes from the route the router matched, or for a mount from the
    # instrumentator's own resolution: the series are those the instrumentator's middleware
    # recorded.
    cases = [
        ("GET", "/kit/notes/42", None, 'handler="/kit/notes/{note_id}",method="GET",status="200"'),
        ("PUT", "/kit/notes/42", None, 'handler="/kit/notes/{note_id}",method="PUT",status="405"'),
        (
            "GET",
            "/kit/docs/assets/swagger-init.js",
            None,
            'handler="/kit/docs/assets",method="GET",status="200"',
        ),
        (
            "POST",
            "/kit/notes",
            {"text": "crash"},
            'handler="/kit/notes",method="POST",status="500"',
        ),
    ]
    for method, path, body, labels in cases:
        before = (await client.get("/metrics")).text
        await client.request(method, path, json=body)
        after = (await client.get("/metrics")).text
        assert (
            sample(after, "http_requests_total", labels)
            == sample(before, "http_requests_total", labels) + 1
        ), (method, path)

    before = (await client.get("/metrics")).text
    response = await client.post("/kit/notes", json={"text": "sized"})
    after = (await client.get("/metrics")).text
    handler = 'handler="/kit/notes"'
    for name, size in [
        ("http_request_size_bytes_sum", len(response.request.content)),
        ("http_response_size_bytes_sum", len(response.content)),
    ]:
        assert sample(after, name, handler) == sample(before, name, handler) + size, name
    latency = 'handler="/kit/notes",method="POST"'
    count = "http_request_duration_seconds_count"
    assert sample(after, count, latency) == sample(before, count, latency) + 1


async def test_redirects_to_the_path_without_its_slash_make_no_series(
    client: httpx.AsyncClient,
) -> None:
    # Named by the path as requested, each id would be a series of its own.
    for path in ("/kit/notes/scan-a1b2/", "/kit/notes/scan-c3d4/"):
        assert (await client.get(path)).status_code == 307
    metrics = (await client.get("/metrics")).text
    assert "scan-" not in metrics
