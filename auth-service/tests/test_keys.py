"""Signing keys across replicas and rotations, with real uvicorn processes where it matters."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from auth_service.config import Settings
from auth_service.main import create_app
from devstack.testing import asgi_client, fresh_database, uvicorn_process
from servicekit.jwks import KeySet, TokenVerifier, http_jwks_fetcher
from servicekit.jwt import generate_private_key_pem, load_signing_key

from .conftest import MIGRATIONS, PASSWORD, bearer, unique_email


async def test_jwks_publishes_the_active_public_key(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.get("/auth/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert [key["kid"] for key in keys] == [app.state.signing_keys.active.kid]
    assert (keys[0]["kty"], keys[0]["alg"], keys[0]["use"]) == ("RSA", "RS256", "sig")
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(keys[0])


@pytest.mark.slow  # not in `make test-fast`: several auth processes
async def test_replicas_started_together_agree_on_one_dev_key() -> None:
    async with fresh_database("auth_race", [MIGRATIONS]) as url, AsyncExitStack() as stack:
        env = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        # All three start at once against a database that holds no key yet.
        urls = await asyncio.gather(
            *(
                stack.enter_async_context(uvicorn_process("auth_service.main:app", env))
                for _ in range(3)
            )
        )
        async with httpx.AsyncClient() as client:
            jwks = [(await client.get(f"{u}/auth/.well-known/jwks.json")).json() for u in urls]
            assert len(jwks[0]["keys"]) == 1
            assert jwks[1] == jwks[0]
            assert jwks[2] == jwks[0]

            email = unique_email()
            registered = await client.post(
                f"{urls[0]}/auth/register", json={"email": email, "password": PASSWORD}
            )
            token = await client.post(
                f"{urls[1]}/auth/token",
                data={"grant_type": "password", "username": email, "password": PASSWORD},
            )
            access_token = token.json()["access_token"]
            me = await client.get(f"{urls[2]}/auth/users/me", headers=bearer(access_token))
            assert me.status_code == 200
            assert me.json()["id"] == registered.json()["id"]

            # The resource-server path: servicekit verifying against the JWKS URL over HTTP.
            keys = KeySet(http_jwks_fetcher(f"{urls[0]}/auth/.well-known/jwks.json", client))
            verifier = TokenVerifier(keys, audience="stack", issuer=Settings().jwt_issuer)
            claims = await verifier.verify(access_token)
            assert str(claims.user_id) == registered.json()["id"]


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), asgi_client(app, "http://auth") as client:
        yield client


async def login_token(client: httpx.AsyncClient) -> str:
    email = unique_email()
    await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    response = await client.post(
        "/auth/token", data={"grant_type": "password", "username": email, "password": PASSWORD}
    )
    token: str = response.json()["access_token"]
    return token


async def jwks_kids(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/auth/.well-known/jwks.json")
    return [key["kid"] for key in response.json()["keys"]]


async def test_rotation_keeps_the_old_key_until_its_tokens_can_have_expired() -> None:
    old_pem, new_pem = generate_private_key_pem(), generate_private_key_pem()
    old_kid, new_kid = load_signing_key(old_pem).kid, load_signing_key(new_pem).kid
    async with fresh_database("auth_rotation", [MIGRATIONS]) as url:
        async with running(Settings(database_url=url, signing_key_pem=old_pem)) as old:
            old_token = await login_token(old)
            assert await jwks_kids(old) == [old_kid]

        async with running(Settings(database_url=url, signing_key_pem=new_pem)) as new:
            assert await jwks_kids(new) == [new_kid, old_kid]
            me = await new.get("/auth/users/me", headers=bearer(old_token))
            assert me.status_code == 200
            new_token = await login_token(new)
            assert (await new.get("/auth/users/me", headers=bearer(new_token))).status_code == 200

        # Once the retention (token lifetime + grace) has passed, the old key is gone.
        expired_retention = Settings(
            database_url=url,
            signing_key_pem=new_pem,
            access_token_ttl_seconds=0,
            key_retirement_grace_seconds=0,
        )
        async with running(expired_retention) as later:
            assert await jwks_kids(later) == [new_kid]


async def test_production_key_is_read_from_a_file(tmp_path: Path) -> None:
    pem = generate_private_key_pem()
    key_file = tmp_path / "signing.pem"
    key_file.write_text(pem)
    async with (
        fresh_database("auth_keyfile", [MIGRATIONS]) as url,
        running(Settings(database_url=url, signing_key_file=key_file)) as client,
    ):
        assert await jwks_kids(client) == [load_signing_key(pem).kid]
        assert (await client.get("/readyz")).status_code == 200
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                stored = await conn.scalar(text("SELECT count(private_pem) FROM auth.signing_keys"))
        finally:
            await engine.dispose()
        assert stored == 0, "a production private key must never be written to the database"
