import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from auth_service.config import Settings
from auth_service.passwords import PasswordHasher

from .conftest import PASSWORD, count_rows, unique_email


async def test_register_returns_the_user(client: httpx.AsyncClient) -> None:
    email = unique_email()
    response = await client.post(
        "/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": "  Ada Lovelace "},
    )
    assert response.status_code == 201
    user = response.json()
    assert set(user) == {
        "id",
        "email",
        "display_name",
        "email_verified",
        "is_admin",
        "is_active",
        "created_at",
    }
    assert user["email"] == email
    assert user["display_name"] == "Ada Lovelace"


async def test_display_name_defaults_to_the_local_part(client: httpx.AsyncClient) -> None:
    email = unique_email()
    response = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert response.json()["display_name"] == email.split("@")[0]


async def test_password_is_stored_as_argon2id_hash(app: FastAPI, client: httpx.AsyncClient) -> None:
    email = unique_email()
    await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    async with app.state.db.engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT password_hash FROM auth.users WHERE email = :e"), {"e": email}
        )
    # The cost the settings give: the test run's lowered one (conftest.py at the root).
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=4$"), stored
    assert PASSWORD not in stored


async def test_the_default_cost_is_the_production_one_and_upgrades_cheaper_hashes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PASSWORD_HASH_MEMORY_KIB")
    monkeypatch.delenv("PASSWORD_HASH_ITERATIONS")
    production = PasswordHasher(Settings())
    stored = await production.hash(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), stored
    assert await production.verify(PASSWORD, stored) == (True, None)
    # A hash made at the test cost (or any outdated one) is replaced at the next login.
    cheap = await PasswordHasher(Settings(password_hash_memory_kib=1024)).hash(PASSWORD)
    matches, upgraded = await production.verify(PASSWORD, cheap)
    assert matches
    assert upgraded is not None
    assert upgraded.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


async def test_same_email_in_other_case_is_taken(app: FastAPI, client: httpx.AsyncClient) -> None:
    email = unique_email()
    first = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert first.status_code == 201
    again = await client.post(
        "/auth/register", json={"email": email.upper(), "password": "another password"}
    )
    assert again.status_code == 409
    assert again.json() == {
        "error": "email_taken",
        "detail": "An account with this email already exists",
    }
    assert (
        await count_rows(
            app, "SELECT count(*) FROM auth.users WHERE lower(email) = lower(:e)", e=email
        )
        == 1
    )


HOSTILE_BODIES = [
    pytest.param(
        {"email": "a" * 10_000 + "@example.com", "password": PASSWORD}, "email", id="10KB email"
    ),
    pytest.param({"email": "not-an-email", "password": PASSWORD}, "email", id="no at"),
    pytest.param(
        {"email": "x@example.com' OR '1'='1", "password": PASSWORD}, "email", id="sqli email"
    ),
    pytest.param(
        {"email": "robert'); DROP TABLE auth.users;--@example.com", "password": PASSWORD},
        "email",
        id="sqli local part",
    ),
    pytest.param({"email": "💥@💥", "password": PASSWORD}, "email", id="emoji email"),
    pytest.param({"email": "@example.com", "password": PASSWORD}, "email", id="empty local part"),
    pytest.param({"password": PASSWORD}, "email", id="missing email"),
    pytest.param({"email": 42, "password": PASSWORD}, "email", id="email wrong type"),
    pytest.param({"email": None, "password": PASSWORD}, "email", id="email null"),
    pytest.param({"email": "{e}", "password": "x" * 7}, "password", id="7-char password"),
    pytest.param({"email": "{e}", "password": "x" * 129}, "password", id="129-char password"),
    pytest.param({"email": "{e}"}, "password", id="missing password"),
    pytest.param({"email": "{e}", "password": 12345678}, "password", id="password wrong type"),
    pytest.param({"email": "{e}", "password": ["a" * 8]}, "password", id="password list"),
    pytest.param(
        {"email": "{e}", "password": PASSWORD, "display_name": ""}, "display_name", id="empty name"
    ),
    pytest.param(
        {"email": "{e}", "password": PASSWORD, "display_name": "   "},
        "display_name",
        id="blank name",
    ),
    pytest.param(
        {"email": "{e}", "password": PASSWORD, "display_name": "n" * 101},
        "display_name",
        id="long name",
    ),
    pytest.param(
        {"email": "{e}", "password": PASSWORD, "is_admin": True}, "is_admin", id="unknown field"
    ),
]


@pytest.mark.parametrize(("body", "field"), HOSTILE_BODIES)
async def test_hostile_registration_is_422_naming_the_field_and_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    email = unique_email()
    body = {k: (email if v == "{e}" else v) for k, v in body.items()}
    users_before = await count_rows(app, "SELECT count(*) FROM auth.users")

    response = await client.post("/auth/register", json=body)

    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"] == "validation_error"
    assert any(err["loc"][-1] == field for err in payload["detail"]), payload
    assert await count_rows(app, "SELECT count(*) FROM auth.users") == users_before


async def test_unicode_password_and_name_are_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/register",
        json={"email": unique_email(), "password": "pässwörd-密码-🔑", "display_name": "Zoë 名"},
    )
    assert response.status_code == 201
    assert response.json()["display_name"] == "Zoë 名"


@pytest.mark.parametrize("length", [8, 128])
async def test_password_length_bounds_are_inclusive(client: httpx.AsyncClient, length: int) -> None:
    response = await client.post(
        "/auth/register", json={"email": unique_email(), "password": "p" * length}
    )
    assert response.status_code == 201


async def test_non_json_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/register", content=b"email=a@b.c", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
