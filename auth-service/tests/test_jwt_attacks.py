"""Every forged or broken access token gets 401 with a Bearer challenge, never a 500."""

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from jose import jwt
from sqlalchemy import text

from auth_service.config import Settings
from devstack.testing import b64url, craft_token, hs256_signer, rs256_signer
from servicekit.jwt import generate_private_key_pem, load_signing_key

from .conftest import Account, bearer, login


@pytest.fixture(scope="module")
async def private_pem(app: FastAPI) -> str:
    async with app.state.db.engine.connect() as conn:
        pem = await conn.scalar(
            text("SELECT private_pem FROM auth.signing_keys WHERE retired_at IS NULL")
        )
    assert isinstance(pem, str)
    return pem


@pytest.fixture(scope="module")
def kid(app: FastAPI) -> str:
    key_id: str = app.state.signing_keys.active.kid
    return key_id


@pytest.fixture(scope="module")
def foreign_pem() -> str:
    return generate_private_key_pem()


def header(kid: str, **extra: Any) -> dict[str, Any]:
    return {"alg": "RS256", "typ": "at+jwt", "kid": kid, **extra}


@dataclass(frozen=True)
class Subject:
    """Whom a forged token names: a user and one of their live sessions (auth-service refuses
    a token whose session has ended, so a forgery must name a live one to test anything else)."""

    user_id: str
    session_id: str


async def logged_in(client: httpx.AsyncClient, account: Account) -> tuple[Subject, str]:
    """The account's subject with a new session, and that session's refresh token."""
    tokens = await login(client, account)
    session_id = jwt.get_unverified_claims(tokens["access_token"])["sid"]
    return Subject(account.id, session_id), tokens["refresh_token"]


def good_claims(settings: Settings, subject: Subject, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject.user_id,
        "sid": subject.session_id,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def public_pem(private_pem: str) -> bytes:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_der(private_pem: str) -> bytes:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def tamper_payload(token: str) -> str:
    head, payload, signature = token.split(".")
    claims = base64.urlsafe_b64decode(payload + "==").replace(b'"aud"', b'"aux"')
    return f"{head}.{b64url(claims)}.{signature}"


def tamper_signature(token: str) -> str:
    head, payload, signature = token.split(".")
    flipped = ("A" if signature[10] != "A" else "B").join([signature[:10], signature[11:]])
    return f"{head}.{payload}.{flipped}"


TokenFactory = Callable[[str, str, str, Settings, Subject, str], str]
# (kid, our private PEM, foreign private PEM, settings, subject, a real refresh token) -> token


def without_claim(claim: str) -> TokenFactory:
    def forge(kid: str, pem: str, foreign: str, s: Settings, uid: Subject, rt: str) -> str:
        return craft_token(header(kid), good_claims(s, uid, **{claim: None}), rs256_signer(pem))

    return forge


ATTACKS: dict[str, TokenFactory] = {
    "alg none": lambda kid, pem, foreign, s, uid, rt: craft_token(
        {"alg": "none", "typ": "at+jwt", "kid": kid}, good_claims(s, uid), lambda _: b""
    ),
    "alg None with signature": lambda kid, pem, foreign, s, uid, rt: craft_token(
        {"alg": "None", "typ": "at+jwt", "kid": kid}, good_claims(s, uid), rs256_signer(pem)
    ),
    "HS256 with public PEM": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid, alg="HS256"), good_claims(s, uid), hs256_signer(public_pem(pem))
    ),
    "HS256 with public DER": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid, alg="HS256"), good_claims(s, uid), hs256_signer(public_der(pem))
    ),
    "HS256 with public JWK": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid, alg="HS256"),
        good_claims(s, uid),
        hs256_signer(str(load_signing_key(pem).public_jwk).encode()),
    ),
    "RS256 by a foreign key, our kid": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid), good_claims(s, uid), rs256_signer(foreign)
    ),
    "unknown kid": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header("not-our-kid"), good_claims(s, uid), rs256_signer(pem)
    ),
    "embedded jwk header": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid, jwk=load_signing_key(foreign).public_jwk),
        good_claims(s, uid),
        rs256_signer(foreign),
    ),
    "embedded jwk header without kid": lambda kid, pem, foreign, s, uid, rt: craft_token(
        {"alg": "RS256", "typ": "at+jwt", "jwk": load_signing_key(foreign).public_jwk},
        good_claims(s, uid),
        rs256_signer(foreign),
    ),
    "jku header": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(load_signing_key(foreign).kid, jku="http://127.0.0.1:9/jwks.json"),
        good_claims(s, uid),
        rs256_signer(foreign),
    ),
    "x5u header": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid, x5u="http://127.0.0.1:9/cert.pem"), good_claims(s, uid), rs256_signer(foreign)
    ),
    "expired": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid),
        good_claims(s, uid, iat=int(time.time()) - 3600, exp=int(time.time()) - 60),
        rs256_signer(pem),
    ),
    "nbf in the future": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid), good_claims(s, uid, nbf=int(time.time()) + 600), rs256_signer(pem)
    ),
    "iat in the future": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid), good_claims(s, uid, iat=int(time.time()) + 600), rs256_signer(pem)
    ),
    **{f"missing {claim}": without_claim(claim) for claim in ("exp", "iat", "sub", "aud", "iss")},
    "wrong aud": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid), good_claims(s, uid, aud="another-api"), rs256_signer(pem)
    ),
    "aud list without ours": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid), good_claims(s, uid, aud=["a", "b"]), rs256_signer(pem)
    ),
    "wrong iss": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid), good_claims(s, uid, iss="https://evil.example"), rs256_signer(pem)
    ),
    "sub not a user id": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid), good_claims(s, replace(uid, user_id="admin")), rs256_signer(pem)
    ),
    "sub of a user that does not exist": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid), good_claims(s, replace(uid, user_id=str(uuid.uuid4()))), rs256_signer(pem)
    ),
    "exp as a string": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid), good_claims(s, uid, exp="tomorrow"), rs256_signer(pem)
    ),
    "wrong typ": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid, typ="JWT"), good_claims(s, uid), rs256_signer(pem)
    ),
    "unknown crit": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid, crit=["urn:example:ext"], **{"urn:example:ext": 1}),
        good_claims(s, uid),
        rs256_signer(pem),
    ),
    "tampered payload": lambda kid, pem, foreign, s, uid, rt: tamper_payload(
        craft_token(header(kid), good_claims(s, uid), rs256_signer(pem))
    ),
    "tampered signature": lambda kid, pem, foreign, s, uid, rt: tamper_signature(
        craft_token(header(kid), good_claims(s, uid), rs256_signer(pem))
    ),
    "signature stripped": lambda kid, pem, foreign, s, uid, rt: (
        craft_token(header(kid), good_claims(s, uid), rs256_signer(pem)).rsplit(".", 1)[0] + "."
    ),
    "refresh token as access token": lambda kid, pem, foreign, s, uid, rt: rt,
    "100 KB token": lambda kid, pem, foreign, s, uid, rt: craft_token(
        header(kid), good_claims(s, uid, pad="x" * 100_000), rs256_signer(pem)
    ),
    "random garbage": lambda kid, pem, foreign, s, uid, rt: "q9$%^&*()_+=.;:[]{}",
    "base64 garbage": lambda kid, pem, foreign, s, uid, rt: "e30.e30.e30",
    "non-json header": lambda kid, pem, foreign, s, uid, rt: f"{b64url(b'[1,2')}.e30.e30",
    "header is a list": lambda kid, pem, foreign, s, uid, rt: f"{b64url(b'[1,2]')}.e30.e30",
}


async def test_control_a_well_formed_token_is_accepted(
    client: httpx.AsyncClient, account: Account, settings: Settings, kid: str, private_pem: str
) -> None:
    """The forging helpers make tokens the server accepts, so each attack below changes only
    the one thing it names."""
    subject, _ = await logged_in(client, account)
    token = craft_token(header(kid), good_claims(settings, subject), rs256_signer(private_pem))
    response = await client.get("/auth/users/me", headers=bearer(token))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_is_401_with_bearer_challenge(
    client: httpx.AsyncClient,
    account: Account,
    settings: Settings,
    kid: str,
    private_pem: str,
    foreign_pem: str,
    attack: str,
) -> None:
    subject, refresh_token = await logged_in(client, account)
    token = ATTACKS[attack](kid, private_pem, foreign_pem, settings, subject, refresh_token)

    response = await client.get("/auth/users/me", headers=bearer(token))

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    "authorization", ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer", "Token abc"]
)
async def test_empty_or_non_bearer_authorization_is_401(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.get("/auth/users/me", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
