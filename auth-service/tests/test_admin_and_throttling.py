import asyncio
import base64
import os
import sys

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from auth_service.admin import create_admin
from auth_service.config import Settings
from auth_service.lifecycle import RESET, prepare_mail
from auth_service.mail import MailRequest
from auth_service.throttle import email_key
from devstack.testing import uvicorn_service

from .conftest import (
    PASSWORD,
    Account,
    bearer,
    count_rows,
    login,
    password_grant,
    refresh_grant,
    register,
    unique_email,
)


async def make_admin(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    admin = await register(client)
    assert await create_admin(settings, admin.email) == f"{admin.email} is now an admin"
    return await login(client, admin)


async def emails_listed(
    client: httpx.AsyncClient, admin: dict[str, str], prefix: str, limit: int
) -> list[str]:
    """Every email the admin list gives for `prefix`, page by page."""
    seen: list[str] = []
    cursor = None
    while True:
        params = {"email": prefix, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        page = await client.get(
            "/auth/admin/users", params=params, headers=bearer(admin["access_token"])
        )
        assert page.status_code == 200, page.text
        seen += [user["email"] for user in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return seen


async def test_openid_configuration_points_at_the_keys_and_token_endpoint(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.get("/auth/.well-known/openid-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["issuer"] == settings.jwt_issuer
    assert config["jwks_uri"] == f"{settings.jwt_issuer}/.well-known/jwks.json"
    assert config["token_endpoint"] == f"{settings.jwt_issuer}/token"
    assert config["grant_types_supported"] == ["password", "refresh_token", "sign_in_code"]
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]


async def test_create_admin_command_creates_an_admin_who_can_log_in(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email = unique_email()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "auth_service.admin", "create-admin", email),
        env={**os.environ, "DATABASE_URL": database_url, "ADMIN_PASSWORD": PASSWORD},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == f"created admin {email}"
    tokens = await login(client, Account("", email, PASSWORD))
    me = (await client.get("/auth/users/me", headers=bearer(tokens["access_token"]))).json()
    assert me["is_admin"] is True
    assert me["email_verified"] is True
    listed = await client.get("/auth/admin/users", headers=bearer(tokens["access_token"]))
    assert listed.status_code == 200


async def test_create_admin_command_refuses_a_bad_email(database_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "auth_service.admin", "create-admin", "not-an-email"),
        env={**os.environ, "DATABASE_URL": database_url, "ADMIN_PASSWORD": PASSWORD},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 1
    assert b"invalid input" in err


async def test_new_accounts_are_not_admins(client: httpx.AsyncClient, account: Account) -> None:
    tokens = await login(client, account)
    me = (await client.get("/auth/users/me", headers=bearer(tokens["access_token"]))).json()
    assert (me["is_admin"], me["is_active"], me["email_verified"]) == (False, True, False)


async def test_admin_routes_are_403_for_non_admins_and_401_without_token(
    client: httpx.AsyncClient, account: Account
) -> None:
    tokens = await login(client, account)
    listed = await client.get("/auth/admin/users", headers=bearer(tokens["access_token"]))
    assert listed.status_code == 403
    assert listed.json()["error"] == "forbidden"
    patched = await client.patch(
        f"/auth/admin/users/{account.id}",
        json={"is_admin": True},
        headers=bearer(tokens["access_token"]),
    )
    assert patched.status_code == 403
    assert (await client.get("/auth/admin/users")).status_code == 401


async def test_admin_pages_users_by_email_prefix(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await make_admin(client, settings)
    prefix = f"page-{os.urandom(4).hex()}-"
    emails = sorted(f"{prefix}{n}@example.com" for n in range(5))
    for email in emails:
        response = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201
    assert await emails_listed(client, admin, prefix.upper(), limit=2) == emails
    nul_cursor = base64.urlsafe_b64encode(b"a\x00b").decode()
    for cursor in ("%%%", nul_cursor, base64.urlsafe_b64encode(b"\xff\xfe").decode()):
        bad = await client.get(
            "/auth/admin/users", params={"cursor": cursor}, headers=bearer(admin["access_token"])
        )
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"] == "invalid_cursor"


async def test_deactivation_ends_sessions_and_blocks_login_until_reactivated(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, account: Account
) -> None:
    admin = await make_admin(client, settings)
    tokens = await login(client, account)
    response = await client.patch(
        f"/auth/admin/users/{account.id}",
        json={"is_active": False},
        headers=bearer(admin["access_token"]),
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert (await refresh_grant(client, tokens["refresh_token"])).json()["error"] == "invalid_grant"
    refused = await password_grant(client, account.email, account.password)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    me = await client.get("/auth/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401

    response = await client.patch(
        f"/auth/admin/users/{account.id}",
        json={"is_active": True},
        headers=bearer(admin["access_token"]),
    )
    assert response.json()["is_active"] is True
    assert (await password_grant(client, account.email, account.password)).status_code == 200
    # The log tells resource servers, and tokens from before the deactivation stay refused.
    async with app.state.db.engine.connect() as conn:
        events = (
            await conn.execute(
                text(
                    "SELECT type, data FROM eventlog.event_inbox"
                    " WHERE channel = :channel ORDER BY seq"
                ),
                {"channel": f"user:{account.id}"},
            )
        ).all()
    assert [event.type for event in events] == ["user.deactivated", "user.reactivated"]
    assert isinstance(events[1].data["issued_before"], int)


async def test_admin_cannot_lock_themself_out_and_unknown_users_are_404(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await make_admin(client, settings)
    me = (await client.get("/auth/users/me", headers=bearer(admin["access_token"]))).json()
    own = await client.patch(
        f"/auth/admin/users/{me['id']}",
        json={"is_active": False},
        headers=bearer(admin["access_token"]),
    )
    assert own.status_code == 409
    missing = await client.patch(
        "/auth/admin/users/00000000-0000-0000-0000-000000000000",
        json={"is_admin": True},
        headers=bearer(admin["access_token"]),
    )
    assert missing.status_code == 404
    unknown_field = await client.patch(
        f"/auth/admin/users/{me['id']}",
        json={"email": "x@example.com"},
        headers=bearer(admin["access_token"]),
    )
    assert unknown_field.status_code == 422


async def fail_logins(client: httpx.AsyncClient, email: str, times: int) -> None:
    for _ in range(times):
        response = await password_grant(client, email, "wrong password!")
        assert response.status_code == 400, response.text


async def test_five_failures_throttle_the_account_with_retry_after(
    client: httpx.AsyncClient, settings: Settings, account: Account
) -> None:
    await fail_logins(client, account.email, settings.login_max_failures)
    throttled = await password_grant(client, account.email.upper(), account.password)
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "too_many_attempts"
    assert 0 < int(throttled.headers["retry-after"]) <= settings.login_lockout_base_seconds
    assert throttled.headers["cache-control"] == "no-store"


async def test_unknown_email_is_throttled_the_same_way(
    client: httpx.AsyncClient, settings: Settings, account: Account
) -> None:
    unknown = unique_email()
    for _ in range(settings.login_max_failures):
        await fail_logins(client, unknown, 1)
        await fail_logins(client, account.email, 1)
    for_unknown = await password_grant(client, unknown, "wrong password!")
    for_known = await password_grant(client, account.email, "wrong password!")
    assert for_unknown.status_code == for_known.status_code == 429
    assert for_unknown.json() == for_known.json()
    # Locked one hash apart: the waits differ by at most a second or two on a loaded machine.
    wait_unknown, wait_known = (int(r.headers["retry-after"]) for r in (for_unknown, for_known))
    assert abs(wait_unknown - wait_known) <= 2


async def test_a_successful_login_resets_the_count(
    client: httpx.AsyncClient, settings: Settings, account: Account
) -> None:
    await fail_logins(client, account.email, settings.login_max_failures - 1)
    await login(client, account)
    await fail_logins(client, account.email, settings.login_max_failures - 1)
    assert (await password_grant(client, account.email, account.password)).status_code == 200


async def test_lockouts_double_up_to_the_cap(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, account: Account
) -> None:
    key = email_key(account.email)
    lockouts = []
    for _ in range(6):
        await fail_logins(client, account.email, settings.login_max_failures)
        assert (await password_grant(client, account.email, account.password)).status_code == 429
        async with app.state.db.engine.begin() as conn:
            # The lockout's length as stored, then time moved on past its end.
            lockouts.append(
                await conn.scalar(
                    text(
                        "SELECT extract(epoch FROM locked_until - window_started_at)::int"
                        " FROM auth.login_throttle WHERE email_hash = :key"
                    ),
                    {"key": key},
                )
            )
            await conn.execute(
                text(
                    "UPDATE auth.login_throttle SET locked_until = now() - interval '1 second'"
                    " WHERE email_hash = :key"
                ),
                {"key": key},
            )
    assert lockouts == [60, 120, 240, 480, 900, 900]


@pytest.mark.slow  # not in `make test-fast`: two auth processes
async def test_throttling_holds_across_two_replicas(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    async with (
        uvicorn_service("auth_service.main:app", env) as first,
        uvicorn_service("auth_service.main:app", env) as second,
        httpx.AsyncClient() as http,
    ):
        email = unique_email()
        registered = await http.post(
            f"{first.url}/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201
        form = {"grant_type": "password", "username": email, "password": "wrong password!"}
        for n in range(5):
            replica = (first, second)[n % 2]
            assert (await http.post(f"{replica.url}/auth/token", data=form)).status_code == 400
        for replica in (first, second):
            good = {**form, "password": PASSWORD}
            response = await http.post(f"{replica.url}/auth/token", data=good)
            assert response.status_code == 429
            assert "retry-after" in response.headers


async def test_lookup_by_email(client: httpx.AsyncClient, account: Account) -> None:
    other = await register(client)
    tokens = await login(client, account)
    found = await client.get(
        "/auth/users/lookup",
        params={"email": other.email.upper()},
        headers=bearer(tokens["access_token"]),
    )
    assert found.status_code == 200
    assert found.json() == {"id": other.id, "display_name": other.email.split("@")[0]}
    missing = await client.get(
        "/auth/users/lookup",
        params={"email": unique_email()},
        headers=bearer(tokens["access_token"]),
    )
    assert missing.status_code == 404
    assert (
        await client.get("/auth/users/lookup", params={"email": other.email})
    ).status_code == 401
    nul = await client.get(
        "/auth/users/lookup",
        params={"email": "a\x00b@example.com"},
        headers=bearer(tokens["access_token"]),
    )
    assert nul.status_code == 422


async def test_lookup_is_rate_limited_per_user(
    client: httpx.AsyncClient, settings: Settings, account: Account
) -> None:
    tokens = await login(client, account)
    statuses = [
        (
            await client.get(
                "/auth/users/lookup",
                params={"email": unique_email()},
                headers=bearer(tokens["access_token"]),
            )
        ).status_code
        for _ in range(settings.lookups_per_minute + 1)
    ]
    assert statuses == [404] * settings.lookups_per_minute + [429]
    other = await login(client, await register(client))
    again = await client.get(
        "/auth/users/lookup", params={"email": account.email}, headers=bearer(other["access_token"])
    )
    assert again.status_code == 200


@pytest.mark.parametrize("path", ["/auth/admin/users", "/auth/users/lookup?email=a@b.example"])
async def test_garbage_tokens_are_401(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path, headers=bearer("garbage"))).status_code == 401


async def test_attempts_sent_together_get_no_more_guesses_than_attempts_sent_in_turn(
    client: httpx.AsyncClient, settings: Settings, account: Account
) -> None:
    # All of them pass the lockout check before the first failure is counted; those that
    # finish after the lockout began are refused with it, whatever their password.
    attempts = [
        password_grant(client, account.email, f"wrong password {n}")
        for n in range(3 * settings.login_max_failures)
    ]
    statuses = sorted(response.status_code for response in await asyncio.gather(*attempts))
    assert statuses == [400] * settings.login_max_failures + [429] * (
        2 * settings.login_max_failures
    )
    assert (await password_grant(client, account.email, account.password)).status_code == 429


async def test_emails_match_the_way_postgresql_lower_cases_them(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    # Python lower-cases U+0130 (capital I with dot) to two characters, PostgreSQL to one: an
    # account with one in its email must still be found by every email lookup.
    prefix = f"\u0130-{os.urandom(4).hex()}-"
    emails = [f"{prefix}{n}@example.com" for n in range(3)]
    for email in emails:
        response = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
    tokens = await login(client, Account("", emails[0], PASSWORD))
    found = await client.get(
        "/auth/users/lookup", params={"email": emails[1]}, headers=bearer(tokens["access_token"])
    )
    assert found.status_code == 200, found.text
    admin = await make_admin(client, settings)
    assert await emails_listed(client, admin, prefix, limit=1) == emails
    mail = await prepare_mail(
        app.state.db.sessionmaker, settings, MailRequest(RESET, email=emails[2])
    )
    assert mail is not None
    assert mail.to == emails[2]


async def test_openapi_gives_every_error_status_the_error_schema(
    client: httpx.AsyncClient,
) -> None:
    openapi = (await client.get("/auth/openapi.json")).json()
    bodies = {"#/components/schemas/ErrorBody", "#/components/schemas/OAuthErrorBody"}
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                # FastAPI lists a 422 for every route with parameters; the token endpoint
                # answers its validation errors with RFC 6749's 400 instead.
                if status < "400" or (path, status) == ("/auth/token", "422"):
                    continue
                schema = response["content"]["application/json"]["schema"]
                refs = {s["$ref"] for s in schema.get("anyOf", [schema])}
                assert refs <= bodies, (method, path, status, schema)
    lookup = openapi["paths"]["/auth/users/lookup"]["get"]["responses"]
    assert {"401", "404", "422", "429", "503"} <= set(lookup)
    admin_list = openapi["paths"]["/auth/admin/users"]["get"]["responses"]
    assert {"400", "401", "403", "422", "503"} <= set(admin_list)


async def test_mails_prepared_at_once_for_one_account_send_one(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """Two workers (or replicas) preparing the same reset at the same moment: the cooldown
    holds, one message goes out."""
    account = await register(client)
    # Connections open in the pool first, so that the three start together.
    await asyncio.gather(
        *(count_rows(app, "SELECT count(*) FROM pg_sleep(0.05)") for _ in range(3))
    )
    prepared = await asyncio.gather(
        *(
            prepare_mail(app.state.db.sessionmaker, settings, MailRequest(RESET, email=email))
            for email in (account.email, account.email.upper(), account.email)
        )
    )
    assert len([mail for mail in prepared if mail is not None]) == 1
    issued = await count_rows(
        app,
        "SELECT count(*) FROM auth.action_tokens t JOIN auth.users u ON u.id = t.user_id"
        " WHERE lower(u.email) = lower(:email) AND t.purpose = 'reset'",
        email=account.email,
    )
    assert issued == 1
