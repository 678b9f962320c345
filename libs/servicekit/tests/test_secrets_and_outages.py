"""What the kit does about secrets in logs, text PostgreSQL cannot store, and a database that
cannot be reached."""

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import APIRouter, FastAPI
from pydantic import Field, ValidationError
from sqlalchemy import text

from devstack.testing import asgi_client, free_port
from servicekit.app import create_service_app
from servicekit.db import Database, SessionDep, Statement, TransactionDep
from servicekit.logging import JsonFormatter
from servicekit.schemas import StrictModel
from servicekit.settings import ServiceSettings

SECRET = "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0LXNhbHQ$not-a-real-hash"


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    """Every log line the process writes meanwhile, formatted as the services write them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("kit-test"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


async def test_a_failing_statement_does_not_carry_its_parameters(database_url: str) -> None:
    database = Database(ServiceSettings(database_url=database_url))
    try:
        async with database.engine.connect() as conn:
            with pytest.raises(Exception) as failed:  # noqa: PT011
                await conn.execute(
                    text("INSERT INTO no_such_table (password_hash) VALUES (:hash)"),
                    {"hash": SECRET},
                )
    finally:
        await database.dispose()
    assert "no_such_table" in str(failed.value)
    assert SECRET not in str(failed.value)
    assert "argon2id" not in str(failed.value)


def test_query_strings_of_logged_paths_are_cut(captured_log: io.StringIO) -> None:
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.setLevel(logging.INFO)
    uvicorn_error.info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/realtime/ws?ticket=t1cket-s3cret"
    )
    try:
        raise ValueError("GET /realtime/sse?channels=x&ticket=t1cket-s3cret failed")
    except ValueError:
        logging.getLogger("kit").exception("while calling /api/x?token=t0ken-s3cret")
    output = captured_log.getvalue()
    assert "t1cket-s3cret" not in output
    assert "t0ken-s3cret" not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert '"WebSocket /realtime/ws" [accepted]' in lines[0]["msg"]


class Nested(StrictModel):
    name: str
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    child: "Nested | None" = None


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"name": "a\x00b"}, ("name",)),
        ({"name": "ok", "tags": ["fine", "bad\x00"]}, ("tags",)),
        ({"name": "ok", "labels": {"k\x00": "v"}}, ("labels",)),
        ({"name": "ok", "child": {"name": "\ud800"}}, ("child", "name")),
    ],
)
def test_strict_models_refuse_unstorable_text_in_every_string_field(
    body: dict[str, object], location: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as refused:
        Nested.model_validate(body)
    assert [error["loc"] for error in refused.value.errors()] == [location]


unreachable_router = APIRouter(prefix="/kit")
READ_ONE = Statement.of(text("SELECT 1"))


@unreachable_router.get("/raw")
async def read_raw(db: TransactionDep) -> dict[str, int]:
    return {"one": await db.fetchval(READ_ONE)}


@unreachable_router.get("/orm")
async def read_orm(session: SessionDep) -> dict[str, int]:
    return {"one": int((await session.execute(text("SELECT 1"))).scalar_one())}


@pytest.fixture
async def unreachable_app() -> AsyncIterator[FastAPI]:
    """An app whose database URL points at a port nothing listens on."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    settings = ServiceSettings(service_name="kit-test", database_url=url)
    database = Database(settings)
    app = create_service_app(
        title="kit", prefix="/kit", settings=settings, routers=[unreachable_router]
    )
    app.state.db = database
    app.state.health.add_check("database", database.check)
    try:
        yield app
    finally:
        await database.dispose()


async def test_an_unreachable_database_is_503_with_retry_after_and_one_warning(
    unreachable_app: FastAPI, captured_log: io.StringIO
) -> None:
    async with asgi_client(unreachable_app, "http://kit") as client:
        responses = [await client.get(path) for path in ("/kit/raw", "/kit/orm") * 3]
        ready = await client.get("/readyz")
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.json() == {
            "error": "unavailable",
            "detail": "The database is unreachable: retry later",
        }
        assert int(response.headers["retry-after"]) > 0
    assert ready.status_code == 503
    lines = [json.loads(line) for line in captured_log.getvalue().splitlines()]
    warnings = [line for line in lines if line["level"] in ("WARNING", "ERROR", "CRITICAL")]
    outage = [line for line in warnings if line["logger"] == "servicekit.outage"]
    assert len(outage) == 1, warnings
    assert not any("exc" in line for line in lines), "a traceback was logged"
