from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from servicekit.settings import ServiceSettings

ProviderName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
# Plain HTTP only to this machine: a test provider, or a development one.
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class OidcProvider(BaseModel):
    """One external OpenID Connect provider (OIDC_PROVIDERS is a JSON list of these)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # In URLs (/auth/oidc/<name>/...) and in the redirect URI registered at the provider.
    name: ProviderName
    display_name: Annotated[str, Field(min_length=1, max_length=64)]
    # Exactly as the provider's discovery document and ID tokens spell it.
    issuer: str
    client_id: Annotated[str, Field(min_length=1)]
    # A confidential client's secret, read from a file; none for a public client (PKCE alone).
    client_secret_file: Path | None = None
    scopes: list[str] = ["openid", "email", "profile"]

    @field_validator("issuer")
    @classmethod
    def https_issuer(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" and not (
            parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS
        ):
            raise ValueError("the issuer must be an https URL (http only for this machine)")
        if parts.query or parts.fragment:
            raise ValueError("the issuer has no query or fragment")
        return value

    @field_validator("scopes")
    @classmethod
    def openid_scope(cls, value: list[str]) -> list[str]:
        return value if "openid" in value else ["openid", *value]

    def client_secret(self) -> str | None:
        if self.client_secret_file is None:
            return None
        return self.client_secret_file.read_text().strip()


class Settings(ServiceSettings):
    service_name: str = "auth-service"
    # How long an access token is valid; it cannot be revoked before, only refused by the
    # resource servers' revocation list (`revocation_window_seconds` must cover it).
    access_token_ttl_seconds: int = 15 * 60
    # How long an unused refresh token stays valid; each use rotates it.
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # Production: the RS256 private key in PEM, from a file (preferred) or the environment.
    # With neither, a development key is generated once and kept in the database.
    signing_key_file: Path | None = None
    signing_key_pem: SecretStr | None = None
    # A retired key stays in the JWKS for the access-token lifetime plus this grace, which
    # must cover a rolling deploy (old replicas still sign with it until they stop).
    key_retirement_grace_seconds: int = 3600
    # Concurrent argon2 hashes; each takes 64 MiB and a core for ~50 ms.
    password_hash_concurrency: int = 2
    # argon2id's cost (RFC 9106's second recommended option: 64 MiB, three passes). Test stacks
    # lower it so that a sign-up costs milliseconds; anything else keeps the default. A stored
    # hash with other parameters is upgraded at its next successful login.
    password_hash_memory_kib: int = Field(default=64 * 1024, ge=1024)
    password_hash_iterations: int = Field(default=3, ge=1)
    # Per-account login throttling: this many failures for one email within the window lock
    # it out for the base time, doubling with each lockout up to the cap. State is in
    # PostgreSQL, so it holds across replicas; a successful login clears it.
    login_max_failures: int = 5
    login_failure_window_seconds: int = 15 * 60
    login_lockout_base_seconds: int = 60
    login_lockout_cap_seconds: int = 15 * 60
    # How often expired throttle rows, lookup budgets and one-time tokens are deleted.
    housekeeping_interval_seconds: float = 10 * 60
    # Members by email: lookups per user per minute.
    lookups_per_minute: int = 30
    # Mail (verification and password reset). Without SMTP_HOST nothing is sent; the native
    # launcher starts a local mail catcher and sets it.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "stack <no-reply@localhost>"
    smtp_starttls: bool = False  # STARTTLS after connecting (port 587)
    smtp_tls: bool = False  # TLS from the first byte (port 465)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_password_file: Path | None = None
    smtp_timeout_seconds: float = 10.0
    mail_workers: int = 2
    mail_queue_size: int = 1000
    mail_attempts: int = 4
    mail_retry_base_seconds: float = 2.0
    # Links in mail point at the demo page, which reads the token from the URL fragment (a
    # fragment never reaches a server, so no log holds it).
    public_url: str = "http://127.0.0.1:8080"
    verify_token_ttl_seconds: int = 24 * 3600
    reset_token_ttl_seconds: int = 30 * 60
    # One message of a kind per account per this interval, however often it is asked for.
    mail_cooldown_seconds: int = 60

    # External OpenID Connect providers, a JSON list (docs/sign-in.md).
    oidc_providers: list[OidcProvider] = Field(default_factory=list)
    # How long a browser may take at the provider (state, nonce and PKCE verifier live this
    # long), and how long the one-time code the demo page exchanges for tokens lives.
    oidc_flow_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    sign_in_code_ttl_seconds: int = Field(default=60, ge=5, le=600)
    # Clock skew allowed on an ID token's exp and iat; bounded, so a token long expired
    # never passes.
    oidc_leeway_seconds: int = Field(default=60, ge=0, le=300)
    # The most a call to a provider (discovery, JWKS, token endpoint) may take; past it the
    # sign-in answers 503 with Retry-After.
    oidc_http_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # A provider's JWKS is refetched when an ID token names a kid it lacks (key rotation), at
    # most this often, so forged kids cannot make us hammer the provider.
    oidc_jwks_min_refresh_seconds: float = Field(default=30.0, ge=0)

    # Passkeys (WebAuthn): a challenge is good for this long, once. The relying party is
    # PUBLIC_URL: its host is the RP ID, its origin the only origin accepted.
    passkey_challenge_ttl_seconds: int = Field(default=300, ge=30, le=1800)

    @field_validator("oidc_providers")
    @classmethod
    def unique_names(cls, value: list[OidcProvider]) -> list[OidcProvider]:
        names = [provider.name for provider in value]
        if len(set(names)) != len(names):
            raise ValueError("provider names must be unique")
        return value

    def oidc_provider(self, name: str) -> OidcProvider | None:
        return next((p for p in self.oidc_providers if p.name == name), None)

    def configured_signing_key(self) -> str | None:
        if self.signing_key_file is not None:
            return self.signing_key_file.read_text()
        if self.signing_key_pem is not None:
            return self.signing_key_pem.get_secret_value()
        return None

    def smtp_password_value(self) -> str | None:
        if self.smtp_password_file is not None:
            return self.smtp_password_file.read_text().strip()
        if self.smtp_password is not None:
            return self.smtp_password.get_secret_value()
        return None
