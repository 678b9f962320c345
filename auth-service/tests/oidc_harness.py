"""What the sign-in tests talk to besides panva's oidc-provider (devstack.testing starts
it): a forging provider of the test's own, a real HTTP server whose token endpoint hands out
whatever ID token a test made."""

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from jose import jwt as jose_jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.testing import free_port
from servicekit.jwt import SigningKey, generate_private_key_pem, load_signing_key

PROVIDER_SCRIPT = Path(__file__).parents[2] / "tests" / "oidc_provider" / "provider.js"
CLIENT_ID = "stack-test"
CLIENT_SECRET = "test-client-secret-3f9a1c"


@dataclass
class ForgedProvider:
    """A provider whose ID tokens the test writes: discovery, a JWKS and a token endpoint."""

    issuer: str
    key: SigningKey
    # What the token endpoint answers next: an ID token, or a status with no token.
    id_token: str | None = None
    token_status: int = 200
    jwks_fetches: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def claims(self, sent_nonce: str, /, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": f"forged-{now}-{id(changes)}",
            "iat": now,
            "exp": now + 300,
            "nonce": sent_nonce,
            "email": "someone@example.test",
            "email_verified": True,
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict[str, Any], key: SigningKey | None = None) -> str:
        key = key or self.key
        token: str = jose_jwt.encode(
            claims, key.private_key, algorithm="RS256", headers={"kid": key.kid}
        )
        return token

    def rotate(self) -> SigningKey:
        """A new key that the JWKS publishes from now on (the old one goes)."""
        self.key = load_signing_key(generate_private_key_pem())
        return self.key


def unsigned(claims: dict[str, Any]) -> str:
    """`alg: none`: a token anyone can write."""

    def part(document: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@asynccontextmanager
async def forged_provider() -> AsyncIterator[ForgedProvider]:
    port = free_port()
    forged = ForgedProvider(
        f"http://127.0.0.1:{port}", load_signing_key(generate_private_key_pem())
    )

    async def discovery(_: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": forged.issuer,
                "authorization_endpoint": f"{forged.issuer}/authorize",
                "token_endpoint": f"{forged.issuer}/token",
                "jwks_uri": f"{forged.issuer}/jwks",
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
            }
        )

    async def jwks(_: Request) -> JSONResponse:
        forged.jwks_fetches += 1
        return JSONResponse({"keys": [forged.key.public_jwk]})

    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        forged.token_requests.append({name: str(value) for name, value in form.items()})
        if forged.token_status != 200:
            return JSONResponse({"error": "server_error"}, status_code=forged.token_status)
        return JSONResponse(
            {"access_token": "forged-access", "token_type": "Bearer", "id_token": forged.id_token}
        )

    app = Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/token", token, methods=["POST"]),
        ]
    )
    # log_config=None: uvicorn would otherwise reconfigure the process's logging (its loggers
    # stop propagating), which tests that run later in this worker read.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield forged
    finally:
        server.should_exit = True
        await serving
