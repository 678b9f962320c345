from pathlib import Path

from pydantic import SecretStr

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "auth-service"
    access_token_ttl_seconds: int = 15 * 60
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
    # Per-account login throttling: this many failures for one email within the window lock
    # it out for the base time, doubling with each lockout up to the cap. State is in
    # PostgreSQL, so it holds across replicas; a successful login clears it.
    login_max_failures: int = 5
    login_failure_window_seconds: int = 15 * 60
    login_lockout_base_seconds: int = 60
    login_lockout_cap_seconds: int = 15 * 60
    # Members by email: lookups per user per minute.
    lookups_per_minute: int = 30

    def configured_signing_key(self) -> str | None:
        if self.signing_key_file is not None:
            return self.signing_key_file.read_text()
        if self.signing_key_pem is not None:
            return self.signing_key_pem.get_secret_value()
        return None
