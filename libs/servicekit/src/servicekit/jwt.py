"""The one module that uses python-jose. Everything about token format and strictness is here.

Strictness, beyond what python-jose does by itself:
- the header is checked before any key is chosen: size cap, `alg` exactly RS256, `typ` exactly
  `at+jwt`, a string `kid`, and no `crit` (we understand no extension, so any is unknown);
- the key comes from our own key set by `kid`; `jku`, `jwk`, `x5u` and `x5c` headers are never
  read;
- `exp iat sub aud iss` are required, `aud` and `iss` checked, `iat` may not lie in the future;
- every exception the library raises (JWTError, JWSError, JWKError, and plain ValueError,
  TypeError, ... on malformed input) becomes `InvalidTokenError`.
"""

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jws
from jose import jwt as jose_jwt
from jose.backends.base import Key

ALGORITHM = "RS256"
ACCESS_TOKEN_TYPE = "at+jwt"
MAX_TOKEN_BYTES = 8192
REQUIRED_CLAIMS = ("exp", "iat", "sub", "aud", "iss")
_DECODE_OPTIONS: dict[str, Any] = {f"require_{claim}": True for claim in REQUIRED_CLAIMS}


class InvalidTokenError(Exception):
    """The token must not be trusted; the message says why (for logs, not for clients)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Key
    public_jwk: dict[str, str]


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate_private_key_pem(bits: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_signing_key(private_key_pem: str) -> SigningKey:
    """An RSA private key in PEM; its `kid` is the RFC 7638 thumbprint of the public key."""
    private = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey) or private.key_size < 2048:
        raise ValueError("the signing key must be an RSA key of at least 2048 bits")
    numbers = private.public_key().public_numbers()
    e, n = _b64url_uint(numbers.e), _b64url_uint(numbers.n)
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"))
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=")
    public_jwk = {"kty": "RSA", "use": "sig", "alg": ALGORITHM, "kid": kid.decode(), "n": n, "e": e}
    return SigningKey(
        kid=public_jwk["kid"],
        private_key=jwk.construct(private_key_pem, ALGORITHM),
        public_jwk=public_jwk,
    )


def verification_key(public_jwk: Mapping[str, Any]) -> Key:
    """A verification key from one JWKS entry; raises ValueError for anything but an RS256 key."""
    if public_jwk.get("kty") != "RSA" or public_jwk.get("alg", ALGORITHM) != ALGORITHM:
        raise ValueError("not an RS256 key")
    if public_jwk.get("use", "sig") != "sig" or "d" in public_jwk:
        raise ValueError("not a public signature key")
    if not isinstance(public_jwk.get("kid"), str):
        raise ValueError("key without a kid")
    try:
        return jwk.construct({"kty": "RSA", "n": public_jwk["n"], "e": public_jwk["e"]}, ALGORITHM)
    except Exception as exc:
        raise ValueError(f"unusable key: {exc}") from exc


def encode_access_token(claims: Mapping[str, Any], key: SigningKey) -> str:
    return jose_jwt.encode(
        dict(claims),
        key.private_key,
        algorithm=ALGORITHM,
        headers={"kid": key.kid, "typ": ACCESS_TOKEN_TYPE},
    )


def read_kid(token: str) -> str:
    """Check everything in the header that can be checked without a key; return the `kid`."""
    if not token or len(token) > MAX_TOKEN_BYTES:
        raise InvalidTokenError("token empty or too large")
    try:
        header = jws.get_unverified_header(token)
    except Exception as exc:
        raise InvalidTokenError(f"malformed token: {exc}") from exc
    if not isinstance(header, dict):
        raise InvalidTokenError("malformed header")
    if header.get("alg") != ALGORITHM:
        raise InvalidTokenError("algorithm not allowed")
    if header.get("typ") != ACCESS_TOKEN_TYPE:
        raise InvalidTokenError("not an access token")
    if "crit" in header:
        raise InvalidTokenError("unknown critical header")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidTokenError("no kid")
    return kid


def decode_access_token(
    token: str, key: Key, *, audience: str, issuer: str, leeway: int
) -> dict[str, Any]:
    """Verify signature and claims of a token whose header `read_kid` accepted."""
    try:
        claims = jose_jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={**_DECODE_OPTIONS, "leeway": leeway},
        )
    except Exception as exc:
        raise InvalidTokenError(f"rejected: {exc}") from exc
    now = time.time()
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise InvalidTokenError("malformed time claims")
    # python-jose compares whole seconds; a token is valid only strictly before `exp`.
    if exp <= now - leeway:
        raise InvalidTokenError("expired")
    if iat > now + leeway:
        raise InvalidTokenError("issued in the future")
    if not isinstance(claims["sub"], str):
        raise InvalidTokenError("malformed subject")
    return claims
