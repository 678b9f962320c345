"""Token verification against a JWKS served over real HTTP by a real uvicorn server."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.testing import craft_token, hs256_signer, rs256_signer
from servicekit import jwks as jwks_module
from servicekit.jwks import KeySet, TokenVerifier, http_jwks_fetcher
from servicekit.jwt import (
    InvalidTokenError,
    SigningKey,
    encode_access_token,
    generate_private_key_pem,
    load_signing_key,
    read_kid,
)

AUDIENCE = "stack"
ISSUER = "http://issuer.test/auth"


class JwksServer:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        self.url = ""

    async def endpoint(self, _: Request) -> JSONResponse:
        self.requests += 1
        return JSONResponse({"keys": self.keys})


@pytest.fixture(scope="module")
async def jwks_server() -> AsyncIterator[JwksServer]:
    served = JwksServer()
    app = Starlette(routes=[Route("/jwks.json", served.endpoint)])
    # log_config=None: uvicorn would otherwise reconfigure the process's logging (its loggers
    # stop propagating), which tests that run later in this worker read.
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    served.url = f"http://127.0.0.1:{port}/jwks.json"
    yield served
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return load_signing_key(generate_private_key_pem())


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make_verifier(
    server: JwksServer, client: httpx.AsyncClient, *, min_refresh: float = 30.0, **kwargs: Any
) -> TokenVerifier:
    keys = KeySet(http_jwks_fetcher(server.url, client), min_refresh_interval=min_refresh)
    return TokenVerifier(keys, audience=AUDIENCE, issuer=ISSUER, **kwargs)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return base


async def test_verifies_a_token_signed_by_a_published_key(
    jwks_server: JwksServer, signing_key: SigningKey, http_client: httpx.AsyncClient
) -> None:
    jwks_server.keys = [signing_key.public_jwk]
    verifier = make_verifier(jwks_server, http_client)
    token_claims = claims()

    verified = await verifier.verify(encode_access_token(token_claims, signing_key))

    assert str(verified.user_id) == token_claims["sub"]
    assert verified.session_id == token_claims["sid"]
    assert verified.expires_at == token_claims["exp"]


async def test_cached_verification_skips_decoding_until_expiry(
    jwks_server: JwksServer,
    signing_key: SigningKey,
    http_client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jwks_server.keys = [signing_key.public_jwk]
    verifier = make_verifier(jwks_server, http_client, leeway=0)
    decodes = 0
    real_decode = jwks_module.decode_access_token

    def counting_decode(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal decodes
        decodes += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwks_module, "decode_access_token", counting_decode)
    now = int(time.time())
    token = encode_access_token(claims(iat=now, exp=now + 2), signing_key)

    for _ in range(5):
        await verifier.verify(token)
    assert decodes == 1

    await asyncio.sleep(2.2)
    with pytest.raises(InvalidTokenError):
        await verifier.verify(token)


async def test_cache_is_bounded(
    jwks_server: JwksServer, signing_key: SigningKey, http_client: httpx.AsyncClient
) -> None:
    jwks_server.keys = [signing_key.public_jwk]
    verifier = make_verifier(jwks_server, http_client, cache_size=3)
    tokens = [encode_access_token(claims(), signing_key) for _ in range(10)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier._cache) == 3
    assert set(verifier._cache) == set(tokens[-3:])


async def test_unknown_kids_refetch_at_most_once_per_interval(
    jwks_server: JwksServer, signing_key: SigningKey, http_client: httpx.AsyncClient
) -> None:
    jwks_server.keys = [signing_key.public_jwk]
    verifier = make_verifier(jwks_server, http_client, min_refresh=60.0)
    await verifier.verify(encode_access_token(claims(), signing_key))
    before = jwks_server.requests
    forger = rs256_signer(generate_private_key_pem())

    for i in range(20):
        forged = craft_token(
            {"alg": "RS256", "typ": "at+jwt", "kid": f"forged-{i}"}, claims(), forger
        )
        with pytest.raises(InvalidTokenError):
            await verifier.verify(forged)

    assert jwks_server.requests - before <= 1


async def test_a_new_key_is_picked_up_by_refetching(
    jwks_server: JwksServer, signing_key: SigningKey, http_client: httpx.AsyncClient
) -> None:
    jwks_server.keys = [signing_key.public_jwk]
    verifier = make_verifier(jwks_server, http_client, min_refresh=0.1)
    await verifier.verify(encode_access_token(claims(), signing_key))

    rotated = load_signing_key(generate_private_key_pem())
    jwks_server.keys = [rotated.public_jwk, signing_key.public_jwk]
    await asyncio.sleep(0.15)

    verified = await verifier.verify(encode_access_token(claims(), rotated))
    assert verified.user_id


async def test_failed_fetch_keeps_known_keys_and_readiness_reports_none_loaded(
    jwks_server: JwksServer, signing_key: SigningKey, http_client: httpx.AsyncClient
) -> None:
    jwks_server.keys = [signing_key.public_jwk]
    keys = KeySet(http_jwks_fetcher(jwks_server.url, http_client), min_refresh_interval=0.0)
    await keys.refresh()
    keys._fetch = http_jwks_fetcher("http://127.0.0.1:9/nothing", http_client)
    await keys.refresh()
    assert await keys.get(signing_key.kid) is not None

    never_loaded = KeySet(http_jwks_fetcher("http://127.0.0.1:9/nothing", http_client))
    with pytest.raises(RuntimeError):
        await never_loaded.ensure_loaded()


async def test_jwks_entries_that_are_not_rs256_public_keys_are_ignored(
    jwks_server: JwksServer, signing_key: SigningKey, http_client: httpx.AsyncClient
) -> None:
    hmac_jwk = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
    wrong_alg = {**signing_key.public_jwk, "kid": "wrong-alg", "alg": "HS256"}
    jwks_server.keys = [hmac_jwk, wrong_alg, {"kid": "broken", "kty": "RSA"}]
    keys = KeySet(http_jwks_fetcher(jwks_server.url, http_client))
    await keys.refresh()
    assert not keys.loaded


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": "none", "typ": "at+jwt", "kid": "k"}, "algorithm"),
        ({"alg": "HS256", "typ": "at+jwt", "kid": "k"}, "algorithm"),
        ({"alg": "RS256", "kid": "k"}, "not an access token"),
        ({"alg": "RS256", "typ": "JWT", "kid": "k"}, "not an access token"),
        ({"alg": "RS256", "typ": "at+jwt", "kid": "k", "crit": ["exp"]}, "critical"),
        ({"alg": "RS256", "typ": "at+jwt"}, "no kid"),
        ({"alg": "RS256", "typ": "at+jwt", "kid": 7}, "no kid"),
    ],
)
def test_header_checks(header: dict[str, Any], reason: str) -> None:
    token = craft_token(header, claims(), hs256_signer(b"x"))
    with pytest.raises(InvalidTokenError, match=reason):
        read_kid(token)


@pytest.mark.parametrize("token", ["", "a" * 9000, "garbage", "a.b", "...", "e30.e30.e30"])
def test_malformed_tokens_raise_only_invalid_token(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        read_kid(token)
