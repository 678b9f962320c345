"""The discovery document's endpoints: under an https issuer, every endpoint is https (the
client secret goes to the token endpoint, the keys come from jwks_uri)."""

import httpx
import pytest

from auth_service.config import OidcProvider
from auth_service.errors import ProviderUnavailable
from auth_service.oidc.provider import ProviderClient

ISSUER = "https://idp.example.com"


def document(**endpoints: str) -> dict[str, str]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
        **endpoints,
    }


async def test_an_https_issuers_endpoints_must_be_https() -> None:
    config = OidcProvider(name="idp", display_name="IdP", issuer=ISSUER, client_id="stack")
    async with httpx.AsyncClient() as http:
        client = ProviderClient(config, http, jwks_min_refresh=30)
        assert client._parse_discovery(document()).token_endpoint == f"{ISSUER}/token"
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            plain = document(**{name: f"http://idp.example.com/{name}"})
            with pytest.raises(ProviderUnavailable, match="incomplete"):
                client._parse_discovery(plain)
