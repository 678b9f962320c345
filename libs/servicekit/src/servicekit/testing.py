"""Helpers for the services' test suites: a fresh, migrated database per test run, and
hand-made tokens for attacking verifiers."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy.engine import make_url

from servicekit.db import drop_database, ensure_database
from servicekit.migrations import upgrade

ADMIN_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


@asynccontextmanager
async def fresh_database(
    prefix: str, migration_dirs: Sequence[Path] = ()
) -> AsyncIterator[str]:
    """A new database named `test_<prefix>_<random>`, migrated, dropped on exit."""
    name = f"test_{prefix}_{uuid.uuid4().hex[:8]}"
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    await ensure_database(url)
    try:
        for directory in migration_dirs:
            await asyncio.to_thread(upgrade, directory, url)
        yield url
    finally:
        await drop_database(url)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


Signer = Callable[[bytes], bytes]


def craft_token(header: Mapping[str, Any], claims: Mapping[str, Any], sign: Signer) -> str:
    """A JWS built by hand, so tests can forge exactly the header and claims an attacker would."""
    signing_input = (
        f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    )
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def rs256_signer(private_key_pem: str) -> Signer:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def hs256_signer(secret: bytes) -> Signer:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()
