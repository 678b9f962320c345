"""ID-token verification (OpenID Connect Core §3.1.3.7), strictly: every rule is checked here
and every failure is a `SignInFailed` that says which rule."""

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from jose import jwk, jws
from jose import jwt as jose_jwt

from auth_service.errors import SignInFailed
from auth_service.oidc.provider import ProviderClient

# Asymmetric algorithms only: `none` proves nothing, and an HS* token would be checked against
# a secret the client shares (or, worse, against a public key used as an HMAC secret).
ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
_KEY_TYPES = {"RS": "RSA", "ES": "EC"}
MAX_ID_TOKEN_BYTES = 16 * 1024


@dataclass(frozen=True)
class VerifiedIdentity:
    subject: str
    email: str | None
    email_verified: bool
    name: str | None


def hash_secret(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


async def verify_id_token(
    token: str,
    provider: ProviderClient,
    *,
    nonce_hash: bytes,
    access_token: str | None,
    leeway: int,
) -> VerifiedIdentity:
    if not token or len(token) > MAX_ID_TOKEN_BYTES:
        raise SignInFailed("The ID token is missing or too large")
    try:
        header = jws.get_unverified_header(token)
    except Exception as exc:
        raise SignInFailed("The ID token is malformed") from exc
    algorithm = header.get("alg")
    discovery = await provider.discovery()
    if algorithm not in ALLOWED_ALGORITHMS or algorithm not in discovery.algorithms:
        raise SignInFailed("The ID token's signing algorithm is not allowed")
    if "crit" in header:
        raise SignInFailed("The ID token has a critical header we do not understand")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise SignInFailed("The ID token is malformed")
    entry = await provider.key(kid)
    if entry is None:
        raise SignInFailed("The ID token is signed with a key the provider does not publish")
    config = provider.config
    try:
        key = _public_key(entry, algorithm)
        claims: dict[str, Any] = jose_jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=config.client_id,
            issuer=config.issuer,
            access_token=access_token,
            options={
                "leeway": leeway,
                "require_iat": True,
                "require_exp": True,
                "require_sub": True,
                "require_aud": True,
                "require_iss": True,
            },
        )
    except Exception as exc:
        # The library's message names the failed check (signature, aud, iss, exp, at_hash).
        raise SignInFailed(f"The ID token was refused: {exc}") from exc
    _check_claims(claims, config.client_id, nonce_hash, leeway)
    email = claims.get("email")
    name = claims.get("name")
    return VerifiedIdentity(
        subject=claims["sub"],
        email=email if isinstance(email, str) and email else None,
        # Only a JSON true counts: some providers send the string "true", which we refuse to
        # guess about.
        email_verified=claims.get("email_verified") is True,
        name=name if isinstance(name, str) and name.strip() else None,
    )


def _public_key(entry: dict[str, Any], algorithm: str) -> Any:
    if entry.get("kty") != _KEY_TYPES[algorithm[:2]] or "d" in entry:
        raise ValueError("the key does not fit the algorithm")
    if entry.get("use", "sig") != "sig" or entry.get("alg", algorithm) != algorithm:
        raise ValueError("the key is not for this algorithm")
    return jwk.construct(entry, algorithm)


def _check_claims(claims: dict[str, Any], client_id: str, nonce_hash: bytes, leeway: int) -> None:
    subject = claims["sub"]
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise SignInFailed("The ID token's subject is malformed")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    # §3.1.3.7 items 4-5: with several audiences the authorized party must be us.
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise SignInFailed("The ID token's authorized party is another client")
    now = time.time()
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise SignInFailed("The ID token's times are malformed")
    if exp <= now - leeway:
        raise SignInFailed("The ID token has expired")
    if iat > now + leeway:
        raise SignInFailed("The ID token was issued in the future")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(hash_secret(nonce), nonce_hash):
        raise SignInFailed("The ID token's nonce is not this sign-in's")
