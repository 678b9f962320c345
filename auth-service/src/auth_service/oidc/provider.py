"""What we ask an OpenID provider over HTTP: its discovery document, its keys, and the tokens
for an authorization code. Every failure to reach it becomes `ProviderUnavailable` (503)."""

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx

from auth_service.config import OidcProvider
from auth_service.errors import ProviderUnavailable, SignInFailed

# The discovery document is refetched after this long: endpoints rarely move.
DISCOVERY_MAX_AGE = 3600.0
# Keys unused this long are refetched even when the kid is known (a revoked key goes).
JWKS_MAX_AGE = 3600.0
MAX_DOCUMENT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Discovery:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    # Client authentication at the token endpoint, as the provider supports it.
    basic_auth: bool
    algorithms: frozenset[str]


class ProviderClient:
    """One provider's endpoints and keys, fetched lazily and cached per replica (nothing here
    needs sharing: every replica can fetch the same documents)."""

    def __init__(
        self, config: OidcProvider, http: httpx.AsyncClient, jwks_min_refresh: float
    ) -> None:
        self.config = config
        self._http = http
        self._jwks_min_refresh = jwks_min_refresh
        self._discovery: Discovery | None = None
        self._discovered_at = float("-inf")
        self._keys: dict[str, dict[str, Any]] = {}
        self._keys_fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def discovery(self) -> Discovery:
        if self._discovery is None or time.monotonic() - self._discovered_at > DISCOVERY_MAX_AGE:
            document = await self._get_json(
                self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            self._discovery = self._parse_discovery(document)
            self._discovered_at = time.monotonic()
        return self._discovery

    def _parse_discovery(self, document: dict[str, Any]) -> Discovery:
        # OpenID Connect Discovery §4.3: the issuer must be exactly the one configured, or
        # someone else's document is answering.
        if document.get("issuer") != self.config.issuer:
            raise ProviderUnavailable("The provider's discovery document names another issuer")
        try:
            # The client secret goes to the token endpoint and the keys come from jwks_uri:
            # never over plain HTTP under an https issuer.
            scheme = self.config.issuer.split("://", 1)[0] + "://"
            endpoints = {
                name: _url(document[name], scheme)
                for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")
            }
        except (KeyError, ValueError) as exc:
            raise ProviderUnavailable("The provider's discovery document is incomplete") from exc
        methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        algorithms = document.get("id_token_signing_alg_values_supported", ["RS256"])
        return Discovery(
            **endpoints,
            basic_auth="client_secret_basic" in methods,
            algorithms=frozenset(a for a in algorithms if isinstance(a, str)),
        )

    async def key(self, kid: str | None) -> dict[str, Any] | None:
        """The provider's public key by `kid` (the only key, when the token names none). A kid
        we lack refetches the set, at most once per `jwks_min_refresh`: keys rotate."""
        found = self._pick(kid)
        stale = time.monotonic() - self._keys_fetched_at > JWKS_MAX_AGE
        if found is not None and not stale:
            return found
        async with self._lock:
            if time.monotonic() - self._keys_fetched_at >= self._jwks_min_refresh or stale:
                discovery = await self.discovery()
                document = await self._get_json(discovery.jwks_uri)
                keys = document.get("keys")
                if not isinstance(keys, list):
                    raise ProviderUnavailable("The provider's key set is malformed")
                self._keys = {
                    str(entry.get("kid", "")): entry for entry in keys if isinstance(entry, dict)
                }
                self._keys_fetched_at = time.monotonic()
        return self._pick(kid)

    def _pick(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def exchange_code(
        self, code: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        """The token endpoint's answer for an authorization code (RFC 6749 §4.1.3, PKCE)."""
        discovery = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        secret = self.config.client_secret()
        auth: httpx.BasicAuth | None = None
        if secret is not None and discovery.basic_auth:
            auth = httpx.BasicAuth(_form_encode(self.config.client_id), _form_encode(secret))
        else:
            form["client_id"] = self.config.client_id
            if secret is not None:
                form["client_secret"] = secret
        try:
            response = await self._http.post(
                discovery.token_endpoint,
                data=form,
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable() from exc
        if response.status_code >= 500:
            raise ProviderUnavailable()
        body = _json_object(response)
        if response.status_code != 200 or body is None:
            # invalid_grant above all: a code used twice, expired, or for another client.
            error = body.get("error") if body else None
            raise SignInFailed(f"The provider refused the code ({error or response.status_code})")
        return body

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ProviderUnavailable() from exc
        body = _json_object(response)
        if response.status_code != 200 or body is None:
            raise ProviderUnavailable()
        return body


def _url(value: object, scheme: str) -> str:
    if not isinstance(value, str) or not value.startswith(scheme):
        raise ValueError(f"not a {scheme} URL")
    return value


def _form_encode(value: str) -> str:
    # RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding.
    return quote_plus(value)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    if len(response.content) > MAX_DOCUMENT_BYTES:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
