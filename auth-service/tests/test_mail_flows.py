import asyncio
import re
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from auth_service import metrics
from auth_service.config import Settings
from auth_service.mail import SUBJECTS
from auth_service.main import create_app
from devstack.testing import asgi_client, free_port

from .conftest import (
    Account,
    bearer,
    login,
    password_grant,
    refresh_grant,
    register,
    unique_email,
)
from .mailcatcher import Catcher, mail_catcher

NEW_PASSWORD = "a brand new password"


@pytest.fixture(scope="module")
def catcher() -> Iterator[Catcher]:
    with mail_catcher() as catcher:
        yield catcher


@pytest.fixture(scope="module")
async def mail_app(database_url: str, catcher: Catcher) -> AsyncIterator[FastAPI]:
    settings = Settings(
        database_url=database_url,
        smtp_host="127.0.0.1",
        smtp_port=catcher.port,
        mail_retry_base_seconds=0.05,
        public_url="http://stack.example",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def mail_client(mail_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(mail_app, "http://auth") as client:
        yield client


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None
    assert rich is not None
    return plain.get_content(), rich.get_content()


def link_token(message: EmailMessage, path: str) -> str:
    plain, rich = parts(message)
    found = re.search(rf"http://stack\.example/#{path}=([A-Za-z0-9_-]+)", plain)
    assert found is not None, plain
    assert f'href="{found.group(0)}"' in rich
    return found.group(1)


async def mailed_token(
    client: httpx.AsyncClient, catcher: Catcher, account: Account, kind: str
) -> str:
    if kind == "verify":
        tokens = await login(client, account)
        response = await client.post(
            "/auth/email/verify-request", headers=bearer(tokens["access_token"])
        )
    else:
        response = await client.post("/auth/password/forgot", json={"email": account.email})
    assert response.status_code == 202
    message = await catcher.wait_for(account.email, SUBJECTS[kind])
    return link_token(message, "verify-email" if kind == "verify" else "reset-password")


async def test_verification_link_verifies_the_email_once(
    mail_client: httpx.AsyncClient, catcher: Catcher
) -> None:
    account = await register(mail_client)
    token = await mailed_token(mail_client, catcher, account, "verify")
    message = catcher.to(account.email)[-1]
    assert message["Subject"] == "Verify your email address"
    verified = await mail_client.post("/auth/email/verify", json={"token": token})
    assert verified.status_code == 200
    assert verified.json()["email_verified"] is True
    tokens = await login(mail_client, account)
    me = await mail_client.get("/auth/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["email_verified"] is True
    again = await mail_client.post("/auth/email/verify", json={"token": token})
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_link"


async def test_verify_request_needs_a_token(mail_client: httpx.AsyncClient) -> None:
    assert (await mail_client.post("/auth/email/verify-request")).status_code == 401


async def test_reset_link_sets_the_password_and_ends_every_session(
    mail_client: httpx.AsyncClient, catcher: Catcher, mail_app: FastAPI
) -> None:
    account = await register(mail_client)
    sessions = [await login(mail_client, account) for _ in range(2)]
    resets_before = metrics.PASSWORD_RESETS._value.get()
    token = await mailed_token(mail_client, catcher, account, "reset")
    reset = await mail_client.post(
        "/auth/password/reset", json={"token": token, "password": NEW_PASSWORD}
    )
    assert reset.status_code == 204
    for session in sessions:
        refused = await refresh_grant(mail_client, session["refresh_token"])
        assert refused.json()["error"] == "invalid_grant"
    assert (await password_grant(mail_client, account.email, account.password)).status_code == 400
    assert (await password_grant(mail_client, account.email, NEW_PASSWORD)).status_code == 200
    assert metrics.PASSWORD_RESETS._value.get() == resets_before + 1
    reused = await mail_client.post(
        "/auth/password/reset", json={"token": token, "password": "yet another password"}
    )
    assert reused.status_code == 400


async def test_reset_refuses_a_short_password_and_keeps_the_token(
    mail_client: httpx.AsyncClient, catcher: Catcher
) -> None:
    account = await register(mail_client)
    token = await mailed_token(mail_client, catcher, account, "reset")
    short = await mail_client.post("/auth/password/reset", json={"token": token, "password": "x"})
    assert short.status_code == 422
    assert short.json()["detail"][0]["loc"][-1] == "password"
    ok = await mail_client.post(
        "/auth/password/reset", json={"token": token, "password": NEW_PASSWORD}
    )
    assert ok.status_code == 204


async def test_tokens_work_only_for_their_purpose(
    mail_client: httpx.AsyncClient, catcher: Catcher
) -> None:
    account = await register(mail_client)
    verify_token = await mailed_token(mail_client, catcher, account, "verify")
    reset_token = await mailed_token(mail_client, catcher, account, "reset")
    as_reset = await mail_client.post(
        "/auth/password/reset", json={"token": verify_token, "password": NEW_PASSWORD}
    )
    assert as_reset.status_code == 400
    as_verify = await mail_client.post("/auth/email/verify", json={"token": reset_token})
    assert as_verify.status_code == 400
    # Neither was spent by the misuse.
    assert (
        await mail_client.post("/auth/email/verify", json={"token": verify_token})
    ).status_code == 200


async def test_tampered_and_expired_tokens_are_refused(
    mail_client: httpx.AsyncClient, catcher: Catcher, mail_app: FastAPI
) -> None:
    account = await register(mail_client)
    token = await mailed_token(mail_client, catcher, account, "reset")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    body = {"token": tampered, "password": NEW_PASSWORD}
    assert (await mail_client.post("/auth/password/reset", json=body)).status_code == 400
    async with mail_app.state.db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE auth.action_tokens SET expires_at = now() - interval '1 second'"
                " WHERE user_id = :user_id"
            ),
            {"user_id": account.id},
        )
    body = {"token": token, "password": NEW_PASSWORD}
    expired = await mail_client.post("/auth/password/reset", json=body)
    assert expired.status_code == 400
    assert expired.json()["error"] == "invalid_link"
    for bad in ({"token": ""}, {"token": "x" * 129}, {"token": "a\x00b"}, {"tok": "x"}):
        assert (await mail_client.post("/auth/email/verify", json=bad)).status_code == 422


async def test_forgot_answers_alike_for_unknown_and_known_emails_and_mails_only_the_known(
    mail_client: httpx.AsyncClient, catcher: Catcher
) -> None:
    known = await register(mail_client)
    unknown = unique_email()
    responses: dict[str, list[httpx.Response]] = {known.email: [], unknown: []}
    timings: dict[str, list[float]] = {known.email: [], unknown: []}
    for _ in range(15):
        for address in (unknown, known.email):
            started = time.perf_counter()
            response = await mail_client.post("/auth/password/forgot", json={"email": address})
            timings[address].append(time.perf_counter() - started)
            responses[address].append(response)
    for address in (known.email, unknown):
        assert {r.status_code for r in responses[address]} == {202}
        assert {r.content for r in responses[address]} == {b""}
    known_median = statistics.median(timings[known.email])
    unknown_median = statistics.median(timings[unknown])
    # Neither path touches the database before answering: only noise separates them.
    assert abs(known_median - unknown_median) < 0.02, (known_median, unknown_median)
    await catcher.wait_for(known.email)
    await asyncio.sleep(0.5)
    assert catcher.to(unknown) == []
    # Fifteen requests, one message: the cooldown holds back the rest.
    assert len(catcher.to(known.email)) == 1


async def test_a_refused_delivery_is_retried(
    mail_client: httpx.AsyncClient, catcher: Catcher
) -> None:
    account = await register(mail_client)
    sent_before = metrics.EMAILS_SENT.labels(kind="reset", outcome="sent")._value.get()
    attempts_before = catcher.attempts
    catcher.refuse_next = 2
    await mail_client.post("/auth/password/forgot", json={"email": account.email})
    await catcher.wait_for(account.email)
    assert catcher.attempts - attempts_before == 3
    # The catcher has the message before the worker, back from the SMTP exchange, counts it.
    sent = metrics.EMAILS_SENT.labels(kind="reset", outcome="sent")
    async with asyncio.timeout(5):
        while sent._value.get() != sent_before + 1:  # noqa: ASYNC110 (a metric, no event)
            await asyncio.sleep(0.01)


async def test_an_unreachable_server_is_given_up_and_logged_without_the_link(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        database_url=database_url,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        mail_attempts=2,
        mail_retry_base_seconds=0.05,
    )
    app = create_app(settings)
    failed = metrics.EMAILS_SENT.labels(kind="reset", outcome="failed")
    failed_before = failed._value.get()
    async with app.router.lifespan_context(app), asgi_client(app, "http://auth") as client:
        account = await register(client)
        response = await client.post("/auth/password/forgot", json={"email": account.email})
        assert response.status_code == 202
        async with asyncio.timeout(10):
            while failed._value.get() == failed_before:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    # The service's JSON log lines, as written (its logging writes to the process's stderr).
    logged = "".join(capsys.readouterr())
    assert '"msg": "mail given up"' in logged
    assert '"msg": "mail not sent"' in logged
    assert "reset-password=" not in logged
    async with app.state.db.engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT count(*) FROM auth.action_tokens WHERE user_id = :id"),
            {"id": account.id},
        )
    assert stored == 1


async def test_a_reset_link_spent_twice_at_once_works_once(
    mail_client: httpx.AsyncClient, catcher: Catcher
) -> None:
    account = await register(mail_client)
    token = await mailed_token(mail_client, catcher, account, "reset")
    resets = [
        mail_client.post("/auth/password/reset", json={"token": token, "password": password})
        for password in (NEW_PASSWORD, "another new password")
    ]
    statuses = sorted(response.status_code for response in await asyncio.gather(*resets))
    assert statuses == [204, 400]
