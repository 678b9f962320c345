"""Sign-in through OpenID providers: against panva's oidc-provider (a real, certified provider,
started on a free port) and a forging provider of the test's own for ID tokens no honest
provider would issue. Nothing is mocked: the app calls both over HTTP."""

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt as jose_jwt
from sqlalchemy import text

from auth_service.config import OidcProvider, Settings
from auth_service.main import create_app
from devstack.testing import (
    asgi_client,
    free_port,
    node_oidc_provider,
    query_of,
    through_provider_pages,
)
from servicekit.jwt import generate_private_key_pem, load_signing_key

from .conftest import bearer, count_rows, login, register, unique_email
from .oidc_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    PROVIDER_SCRIPT,
    ForgedProvider,
    forged_provider,
    unsigned,
)

PUBLIC_URL = "http://auth"
REDIRECT_URI = f"{PUBLIC_URL}/auth/oidc/test/callback"


@pytest.fixture(scope="module")
async def real_issuer() -> AsyncIterator[str]:
    async with node_oidc_provider(
        PROVIDER_SCRIPT,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],
    ) as issuer:
        yield issuer


@pytest.fixture(scope="module")
async def forged() -> AsyncIterator[ForgedProvider]:
    async with forged_provider() as provider:
        yield provider


@pytest.fixture(scope="module")
async def oidc_app(
    database_url: str,
    real_issuer: str,
    forged: ForgedProvider,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FastAPI]:
    secret_file = tmp_path_factory.mktemp("oidc") / "client-secret"
    secret_file.write_text(CLIENT_SECRET + "\n")

    def provider(name: str, issuer: str) -> OidcProvider:
        return OidcProvider(
            name=name,
            display_name=name.title(),
            issuer=issuer,
            client_id=CLIENT_ID,
            client_secret_file=secret_file,
        )

    settings = Settings(
        database_url=database_url,
        public_url=PUBLIC_URL,
        oidc_jwks_min_refresh_seconds=0.5,
        oidc_providers=[
            provider("test", real_issuer),
            provider("forged", forged.issuer),
            # Nothing listens there.
            provider("down", f"http://127.0.0.1:{free_port()}"),
        ],
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def browser(oidc_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """One browser: the stack's cookies are kept between its requests."""
    async with asgi_client(oidc_app, PUBLIC_URL) as client:
        yield client


async def begin(
    browser: httpx.AsyncClient, provider: str = "test", token: str | None = None
) -> str:
    path = f"/auth/oidc/{provider}/{'link' if token else 'start'}"
    response = await browser.post(path, headers=bearer(token) if token else {})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    url: str = response.json()["authorization_url"]
    return url


async def callback(browser: httpx.AsyncClient, url: str) -> httpx.Response:
    return await browser.get(url.removeprefix(PUBLIC_URL))


async def sign_in_code(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"{PUBLIC_URL}/#sign-in="), location
    return location.split("=", 1)[1]


async def redeem(browser: httpx.AsyncClient, code: str) -> httpx.Response:
    return await browser.post("/auth/token", data={"grant_type": "sign_in_code", "code": code})


async def sign_in(browser: httpx.AsyncClient, login_name: str) -> dict[str, str]:
    """The whole flow through the real provider: tokens of the stack."""
    url = await begin(browser)
    back = await through_provider_pages(url, login_name, REDIRECT_URI)
    redeemed = await redeem(browser, await sign_in_code(await callback(browser, back)))
    assert redeemed.status_code == 200, redeemed.text
    tokens: dict[str, str] = redeemed.json()
    return tokens


async def me(browser: httpx.AsyncClient, tokens: dict[str, str]) -> dict[str, object]:
    response = await browser.get("/auth/users/me", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def refused(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error, response.text
    assert "location" not in response.headers


async def test_configured_providers_are_listed(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/auth/oidc/providers")
    assert response.status_code == 200
    assert [p["name"] for p in response.json()] == ["test", "forged", "down"]
    assert response.json()[0] == {"name": "test", "display_name": "Test"}


async def test_first_sign_in_creates_an_account_with_a_session_like_any_other(
    browser: httpx.AsyncClient, oidc_app: FastAPI
) -> None:
    email = unique_email()
    url = await begin(browser)
    sent = query_of(url)
    assert sent["code_challenge_method"] == "S256"
    assert sent["redirect_uri"] == REDIRECT_URI
    assert {"state", "nonce", "code_challenge"} <= set(sent)
    back = await through_provider_pages(url, email, REDIRECT_URI)
    code = await sign_in_code(await callback(browser, back))
    tokens = (await redeem(browser, code)).json()
    account = await me(browser, tokens)
    assert account["email"] == email
    assert account["email_verified"] is True
    # The code, the state and the password grant are each good for nothing now.
    refused_code = await redeem(browser, code)
    assert refused_code.status_code == 400
    assert refused_code.json()["error"] == "invalid_grant"
    refused(await callback(browser, back), 400, "sign_in_failed")
    password = await browser.post(
        "/auth/token", data={"grant_type": "password", "username": email, "password": "x" * 12}
    )
    assert password.status_code == 400
    # Refresh rotation and logout as for a password session.
    rotated = await browser.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert rotated.status_code == 200, rotated.text
    logout = await browser.post(
        "/auth/logout", json={"refresh_token": rotated.json()["refresh_token"]}
    )
    assert logout.status_code == 204
    after = await browser.get("/auth/users/me", headers=bearer(rotated.json()["access_token"]))
    assert after.status_code == 401
    # Signing in again reaches the same account. A redeemed code's hash is gone.
    again = await sign_in(browser, email)
    assert (await me(browser, again))["id"] == account["id"]
    code_hash = hashlib.sha256(code.encode()).digest()
    query = "SELECT count(*) FROM auth.sign_in_codes WHERE code_hash = :h"
    assert await count_rows(oidc_app, query, h=code_hash) == 0
    linked = await browser.get("/auth/users/me/providers", headers=bearer(again["access_token"]))
    assert [(p["provider"], p["email"]) for p in linked.json()] == [("test", email)]


async def test_a_state_that_is_wrong_or_from_another_browser_is_refused(
    oidc_app: FastAPI, browser: httpx.AsyncClient
) -> None:
    url = await begin(browser)
    back = await through_provider_pages(url, unique_email(), REDIRECT_URI)
    wrong = back.replace(f"state={query_of(back)['state']}", f"state={uuid.uuid4().hex}")
    refused(await callback(browser, wrong), 400, "sign_in_failed")
    refused(await callback(browser, back.split("&state=")[0]), 400, "sign_in_failed")
    async with asgi_client(oidc_app, PUBLIC_URL) as other_browser:
        refused(await callback(other_browser, back), 400, "sign_in_failed")
    # The attempt from the other browser used the state up.
    refused(await callback(browser, back), 400, "sign_in_failed")


async def test_a_code_the_provider_already_redeemed_is_refused(browser: httpx.AsyncClient) -> None:
    back = await through_provider_pages(await begin(browser), unique_email(), REDIRECT_URI)
    await sign_in_code(await callback(browser, back))
    # A fresh state of this browser, with the spent code.
    second = query_of(await begin(browser))
    replay = f"{REDIRECT_URI}?code={query_of(back)['code']}&state={second['state']}"
    response = await callback(browser, replay)
    refused(response, 400, "sign_in_failed")
    assert "refused the code" in response.json()["detail"]


async def test_a_provider_error_is_refused_without_a_session(browser: httpx.AsyncClient) -> None:
    state = query_of(await begin(browser))["state"]
    response = await callback(browser, f"{REDIRECT_URI}?error=access_denied&state={state}")
    refused(response, 400, "sign_in_failed")
    assert "access_denied" in response.json()["detail"]


async def forged_callback(
    browser: httpx.AsyncClient, forged: ForgedProvider, make_token: Callable[[str], str]
) -> httpx.Response:
    """A sign-in through the forging provider, whose token endpoint answers `make_token`'s
    ID token (given the nonce the app sent)."""
    sent = query_of(await begin(browser, "forged"))
    forged.id_token = make_token(sent["nonce"])
    return await callback(
        browser, f"{PUBLIC_URL}/auth/oidc/forged/callback?code=c0de&state={sent['state']}"
    )


async def test_a_well_formed_forged_provider_token_is_accepted(
    browser: httpx.AsyncClient, forged: ForgedProvider
) -> None:
    """The control for the hostile tokens below: the forging provider can sign someone in,
    with PKCE's verifier and the client's secret sent to its token endpoint."""
    response = await forged_callback(
        browser, forged, lambda nonce: forged.sign(forged.claims(nonce, email=unique_email()))
    )
    await sign_in_code(response)
    sent = forged.token_requests[-1]
    assert sent["client_secret"] == CLIENT_SECRET
    assert len(sent["code_verifier"]) >= 43


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "another-client"},
        {"aud": [CLIENT_ID, "another-client"]},  # several audiences: azp required
        {"aud": [CLIENT_ID, "another-client"], "azp": "another-client"},
        {"iss": "http://127.0.0.1:1"},
        {"nonce": "not-the-nonce-we-sent"},
        {"nonce": None},
        {"exp": 1_700_000_000, "iat": 1_699_999_000},  # expired years ago
        {"iat": 4_000_000_000},  # issued in the future
        {"sub": None},
    ],
    ids=["aud", "aud-no-azp", "azp", "iss", "nonce", "no-nonce", "expired", "future", "no-sub"],
)
async def test_an_id_token_with_wrong_claims_is_refused(
    browser: httpx.AsyncClient, forged: ForgedProvider, change: dict[str, object]
) -> None:
    response = await forged_callback(
        browser, forged, lambda nonce: forged.sign(forged.claims(nonce, **change))
    )
    refused(response, 400, "sign_in_failed")


async def test_unsigned_hmac_and_unpublished_key_tokens_are_refused(
    browser: httpx.AsyncClient, forged: ForgedProvider
) -> None:
    outsider = load_signing_key(generate_private_key_pem())
    for make in (
        lambda nonce: unsigned(forged.claims(nonce)),
        # HS256 with the client secret, and with the provider's public key as the secret.
        lambda nonce: jose_jwt.encode(forged.claims(nonce), CLIENT_SECRET, algorithm="HS256"),
        lambda nonce: jose_jwt.encode(
            forged.claims(nonce), str(forged.key.public_jwk), algorithm="HS256"
        ),
        lambda nonce: forged.sign(forged.claims(nonce), key=outsider),
        # The published kid, another key's signature.
        lambda nonce: jose_jwt.encode(
            forged.claims(nonce),
            outsider.private_key,
            algorithm="RS256",
            headers={"kid": forged.key.kid},
        ),
    ):
        refused(await forged_callback(browser, forged, make), 400, "sign_in_failed")


async def test_a_rotated_key_is_fetched_and_unknown_kids_are_rate_limited(
    browser: httpx.AsyncClient, forged: ForgedProvider
) -> None:
    await asyncio.sleep(0.6)
    new_key = forged.rotate()
    response = await forged_callback(
        browser, forged, lambda nonce: forged.sign(forged.claims(nonce, email=unique_email()))
    )
    await sign_in_code(response)
    fetches = forged.jwks_fetches
    outsider = load_signing_key(generate_private_key_pem())
    for _ in range(3):
        response = await forged_callback(
            browser, forged, lambda nonce: forged.sign(forged.claims(nonce), key=outsider)
        )
        refused(response, 400, "sign_in_failed")
    assert forged.jwks_fetches - fetches <= 1, "a flood of unknown kids refetched the keys"
    assert forged.key is new_key


async def test_an_unreachable_provider_is_a_503_with_retry_after(
    browser: httpx.AsyncClient, forged: ForgedProvider
) -> None:
    response = await browser.post("/auth/oidc/down/start")
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "provider_unavailable"
    assert int(response.headers["retry-after"]) > 0
    forged.token_status = 502
    try:
        response = await forged_callback(browser, forged, lambda nonce: "unused")
    finally:
        forged.token_status = 200
    assert response.status_code == 503
    assert "retry-after" in response.headers
    unknown = await browser.post("/auth/oidc/nobody/start")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_provider"


async def test_an_email_match_links_only_when_both_sides_verified_it(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, oidc_app: FastAPI
) -> None:
    # Our account unverified, the provider's verified: refused.
    account = await register(client)
    url = await begin(browser)
    response = await callback(
        browser, await through_provider_pages(url, account.email, REDIRECT_URI)
    )
    refused(response, 409, "account_exists")
    # The provider's unverified, ours verified: refused.
    unverified = await register(client)
    email = f"unverified-{uuid.uuid4().hex[:8]}@example.test"
    await set_email(oidc_app, unverified.id, email, verified=True)
    url = await begin(browser)
    response = await callback(browser, await through_provider_pages(url, email, REDIRECT_URI))
    refused(response, 400, "sign_in_failed")
    # The provider's unverified and no account has it: no account is made either (its owner
    # could take it back by a password reset, and the identity would stay linked).
    nobody = f"unverified-{uuid.uuid4().hex[:8]}@example.test"
    url = await begin(browser)
    response = await callback(browser, await through_provider_pages(url, nobody, REDIRECT_URI))
    refused(response, 400, "sign_in_failed")
    assert "not verified" in response.json()["detail"]
    assert (
        await count_rows(oidc_app, "SELECT count(*) FROM auth.users WHERE email = :e", e=nobody)
        == 0
    )
    # Both verified: linked to the existing account.
    await set_email(oidc_app, account.id, account.email, verified=True)
    tokens = await sign_in(browser, account.email)
    assert (await me(browser, tokens))["id"] == account.id
    assert (
        await count_rows(
            oidc_app, "SELECT count(*) FROM auth.users WHERE lower(email) = :e", e=account.email
        )
        == 1
    )


async def set_email(app: FastAPI, user_id: str, email: str, *, verified: bool) -> None:
    async with app.state.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE auth.users SET email = :e, email_verified = :v WHERE id = :id"),
            {"e": email, "v": verified, "id": uuid.UUID(user_id)},
        )


async def test_a_signed_in_user_links_lists_and_unlinks_a_provider(
    browser: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    account = await register(client)
    tokens = await login(client, account)
    provider_login = f"linked-{uuid.uuid4().hex[:8]}"
    url = await begin(browser, token=tokens["access_token"])
    response = await callback(
        browser, await through_provider_pages(url, provider_login, REDIRECT_URI)
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"].endswith("&linked=test")
    relinked = (await redeem(browser, (await sign_in_code(response)).split("&")[0])).json()
    assert (await me(browser, relinked))["id"] == account.id
    # The provider's account now signs in to ours, though the emails differ.
    signed_in = await sign_in(browser, provider_login)
    assert (await me(browser, signed_in))["id"] == account.id
    listed = await browser.get("/auth/users/me/providers", headers=bearer(tokens["access_token"]))
    assert [p["provider"] for p in listed.json()] == ["test"]
    # Another account cannot link the same provider account.
    other = await register(client)
    other_tokens = await login(client, other)
    url = await begin(browser, token=other_tokens["access_token"])
    response = await callback(
        browser, await through_provider_pages(url, provider_login, REDIRECT_URI)
    )
    refused(response, 409, "identity_taken")
    # With a password left, unlinking is allowed; then the provider's account is a stranger.
    unlinked = await browser.delete(
        "/auth/users/me/providers/test", headers=bearer(tokens["access_token"])
    )
    assert unlinked.status_code == 204
    missing = await browser.delete(
        "/auth/users/me/providers/test", headers=bearer(tokens["access_token"])
    )
    assert missing.status_code == 404


async def test_the_last_way_to_sign_in_cannot_be_unlinked(browser: httpx.AsyncClient) -> None:
    tokens = await sign_in(browser, unique_email())
    response = await browser.delete(
        "/auth/users/me/providers/test", headers=bearer(tokens["access_token"])
    )
    refused(response, 409, "last_sign_in_method")


async def test_linking_needs_a_signed_in_user(browser: httpx.AsyncClient) -> None:
    response = await browser.post("/auth/oidc/test/link")
    assert response.status_code == 401


def test_an_issuer_must_be_https_but_on_this_machine() -> None:
    with pytest.raises(ValueError, match="https"):
        OidcProvider(name="x", display_name="X", issuer="http://idp.example.com", client_id="c")
    assert OidcProvider(
        name="x", display_name="X", issuer="https://idp.example.com", client_id="c"
    ).scopes == ["openid", "email", "profile"]


async def test_no_log_record_holds_a_sign_in_secret(
    browser: httpx.AsyncClient, forged: ForgedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """ID tokens, the client secret, state, nonce, the PKCE verifier, the provider's code and
    our one-time code: in no log record, for a sign-in that succeeds or one refused."""
    caplog.set_level("DEBUG")
    secrets = {CLIENT_SECRET}
    for claims in ({"email": unique_email()}, {"aud": "another-client"}):
        sent = query_of(await begin(browser, "forged"))
        forged.id_token = forged.sign(forged.claims(sent["nonce"], **claims))
        code = uuid.uuid4().hex
        response = await callback(
            browser, f"{PUBLIC_URL}/auth/oidc/forged/callback?code={code}&state={sent['state']}"
        )
        secrets |= {forged.id_token, sent["state"], sent["nonce"], code}
        secrets.add(forged.token_requests[-1]["code_verifier"])
        if response.status_code == 303:
            secrets.add(response.headers["location"].split("=", 1)[1])
    # Not the test's own client, which logs the callback URLs it calls (http://auth/...).
    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__}"
        for record in caplog.records
        if not (record.name == "httpx" and PUBLIC_URL in record.getMessage())
    )
    assert "/auth/oidc/forged/callback" in logged, "the check saw no log of the callback"
    leaked = [secret for secret in secrets if secret in logged]
    assert not leaked


async def test_behind_https_the_flow_cookie_is_a_host_cookie(
    database_url: str, real_issuer: str
) -> None:
    """__Host-: Secure, Path=/, no Domain, so a sibling subdomain cannot plant its own."""
    settings = Settings(
        database_url=database_url,
        public_url="https://stack.example.com",
        oidc_providers=[
            OidcProvider(name="test", display_name="Test", issuer=real_issuer, client_id="c")
        ],
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), asgi_client(app, "https://auth") as client:
        response = await client.post("/auth/oidc/test/start")
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-oidc_browser=")
    assert "Path=/;" in cookie
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Domain" not in cookie


def sign_ins(metrics_text: str, outcome: str) -> float:
    prefix = f'auth_sign_ins_total{{method="oidc",outcome="{outcome}"}} '
    line = next(line for line in metrics_text.splitlines() if line.startswith(prefix))
    return float(line.removeprefix(prefix))


async def test_a_deactivated_account_gets_no_session_and_outcomes_are_counted(
    browser: httpx.AsyncClient, oidc_app: FastAPI
) -> None:
    before = (await browser.get("/metrics")).text
    email = unique_email()
    tokens = await sign_in(browser, email)
    user_id = str((await me(browser, tokens))["id"])
    # A code issued before the deactivation is worth nothing after it.
    url = await begin(browser)
    code = await sign_in_code(
        await callback(browser, await through_provider_pages(url, email, REDIRECT_URI))
    )
    async with oidc_app.state.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE auth.users SET is_active = false WHERE id = :id"),
            {"id": uuid.UUID(user_id)},
        )
    late = await redeem(browser, code)
    assert late.status_code == 400
    assert late.json()["error"] == "invalid_grant"
    url = await begin(browser)
    response = await callback(browser, await through_provider_pages(url, email, REDIRECT_URI))
    refused(response, 403, "account_inactive")
    after = (await browser.get("/metrics")).text
    assert sign_ins(after, "success") - sign_ins(before, "success") == 2
    assert sign_ins(after, "inactive") - sign_ins(before, "inactive") == 1
