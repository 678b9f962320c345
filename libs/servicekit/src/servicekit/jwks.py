"""Token verification for resource servers: a key set refreshed from a JWKS, and a verifier
that caches verified tokens until they expire so the common path costs a dict lookup."""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from jose.backends.base import Key

from servicekit.jwt import InvalidTokenError, decode_access_token, read_kid, verification_key

logger = logging.getLogger(__name__)


class RevocationList(Protocol):
    """Users whose tokens stop working before they expire (eventlog.revocations keeps them,
    from the event log)."""

    def is_revoked(self, user_id: uuid.UUID, issued_at: float) -> bool: ...


JwksFetcher = Callable[[], Awaitable[Sequence[Mapping[str, Any]]]]


class KeySet:
    """Public keys by `kid`, loaded through `fetch`.

    A `kid` we do not know triggers a refetch, at most once per `min_refresh_interval` (so a
    flood of forged kids cannot turn into a flood of fetches); the whole set is also refetched
    once it is older than `max_age`, to drop keys that were retired. A failed fetch keeps the
    keys we have.
    """

    def __init__(
        self,
        fetch: JwksFetcher,
        *,
        min_refresh_interval: float = 30.0,
        max_age: float = 300.0,
    ) -> None:
        self._fetch = fetch
        self._min_refresh_interval = min_refresh_interval
        self._max_age = max_age
        self._keys: dict[str, Key] = {}
        self._jwks: list[dict[str, Any]] = []
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    async def current_jwks(self) -> list[dict[str, Any]]:
        """The public keys as JWKS entries, refetched first when the set is stale."""
        if time.monotonic() - self._fetched_at >= self._max_age:
            await self.refresh(min_interval=self._min_refresh_interval)
        return list(self._jwks)

    async def get(self, kid: str) -> Key | None:
        now = time.monotonic()
        key = self._keys.get(kid)
        if key is not None and now - self._fetched_at < self._max_age:
            return key
        if now - self._attempted_at >= self._min_refresh_interval:
            await self.refresh(min_interval=self._min_refresh_interval)
        return self._keys.get(kid)

    async def refresh(self, *, min_interval: float = 0.0) -> None:
        async with self._lock:
            # Another caller may have refreshed while we waited for the lock.
            if time.monotonic() - self._attempted_at < min_interval:
                return
            self._attempted_at = time.monotonic()
            try:
                entries = await self._fetch()
            except Exception as exc:
                logger.warning("key set fetch failed", extra={"err": repr(exc)})
                return
            keys: dict[str, Key] = {}
            jwks: list[dict[str, Any]] = []
            for entry in entries:
                try:
                    keys[entry["kid"]] = verification_key(entry)
                    jwks.append(dict(entry))
                except (ValueError, KeyError, TypeError) as exc:
                    logger.warning("unusable key skipped", extra={"err": str(exc)})
            self._keys, self._jwks = keys, jwks
            self._fetched_at = time.monotonic()

    async def ensure_loaded(self) -> None:
        """A readiness check: raises while no key is known."""
        if not self.loaded:
            await self.refresh(min_interval=1.0)
        if not self.loaded:
            raise RuntimeError("no verification key loaded")


def http_jwks_fetcher(url: str, client: httpx.AsyncClient) -> JwksFetcher:
    async def fetch() -> Sequence[Mapping[str, Any]]:
        response = await client.get(url, timeout=5.0)
        response.raise_for_status()
        body = response.json()
        keys = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(keys, list):
            raise ValueError("JWKS without a keys list")
        return [key for key in keys if isinstance(key, dict)]

    return fetch


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: str | None
    token_id: str | None
    expires_at: float
    claims: Mapping[str, Any]


class TokenVerifier:
    def __init__(
        self,
        keys: KeySet,
        *,
        audience: str,
        issuer: str,
        leeway: int = 30,
        cache_size: int = 10_000,
        revoked: RevocationList | None = None,
    ) -> None:
        self.keys = keys
        # Users whose tokens stop working before they expire (learned from the event log).
        self.revoked = revoked
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._cache_size = cache_size
        self._cache: dict[str, AccessClaims] = {}

    async def verify(self, token: str) -> AccessClaims:
        verified = await self._verify(token)
        if self.revoked is not None and self.revoked.is_revoked(
            verified.user_id, float(verified.claims["iat"])
        ):
            raise InvalidTokenError("the user's tokens were revoked")
        return verified

    async def _verify(self, token: str) -> AccessClaims:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self._leeway > time.time():
                return cached
            del self._cache[token]
        kid = read_kid(token)
        key = await self.keys.get(kid)
        if key is None:
            raise InvalidTokenError("unknown kid")
        claims = decode_access_token(
            token, key, audience=self._audience, issuer=self._issuer, leeway=self._leeway
        )
        try:
            user_id = uuid.UUID(claims["sub"])
        except ValueError as exc:
            raise InvalidTokenError("subject is not a user id") from exc
        verified = AccessClaims(
            user_id=user_id,
            session_id=_optional_str(claims.get("sid")),
            token_id=_optional_str(claims.get("jti")),
            expires_at=float(claims["exp"]),
            claims=claims,
        )
        if len(self._cache) >= self._cache_size:
            # Oldest first: dicts keep insertion order, and old entries expire first.
            del self._cache[next(iter(self._cache))]
        self._cache[token] = verified
        return verified


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
