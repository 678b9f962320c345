import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)


class SettingsFromFiles(PydanticBaseSettingsSource):
    """`<NAME>_FILE=/path` sets the setting `<NAME>` to the file's content (without the final
    newline): how secrets mounted as files (Kubernetes Secrets, Docker secrets) reach a service,
    so that they are not in its environment, where every child process inherits them and
    /proc/<pid>/environ shows them."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = field_name.upper()
        path = os.environ.get(f"{variable}_FILE")
        if path is None:
            return None, field_name, False
        if variable in os.environ:
            raise SettingsError(f"set {variable} or {variable}_FILE, not both")
        try:
            return Path(path).read_text().removesuffix("\n"), field_name, False
        except OSError as exc:
            raise SettingsError(f"{variable}_FILE: {exc.strerror}: {path}") from exc

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, field_name)
            if value is None:
                continue
            if self.field_is_complex(field):  # JSON, as in the environment
                try:
                    value = self.decode_complex_value(field_name, field, value)
                except ValueError as exc:
                    raise SettingsError(f"{field_name.upper()}_FILE: not JSON ({exc})") from exc
            values[field_name] = value
        return values


class ServiceSettings(BaseSettings):
    """Settings every service reads from its environment (names are the upper-case field names).

    The defaults are development defaults for the native stack; production sets them explicitly.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = SettingsFromFiles(settings_cls)
        return init_settings, env_settings, files, dotenv_settings, file_secret_settings

    # The name on every log line and metric of the process.
    service_name: str = "service"
    # The level of the process's JSON log lines (DEBUG, INFO, WARNING, ERROR).
    log_level: str = "INFO"
    # The PostgreSQL database, as an SQLAlchemy URL with the asyncpg driver; each service
    # keeps to its own schema in it (docs/contract.md).
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/stack"
    # A fixed pool: overflow connections are opened and closed under load, and a connection
    # costs a TLS handshake; past the pool, requests wait for a connection instead. Sized for
    # PostgreSQL's cores, not the request rate: more connections than it can run at once only
    # queue inside it (measured on 2 cores: 20 gave list-tasks a p99 of 0.3-1.2 s, 10 gave
    # 60-90 ms at a higher rate). The stack's five processes hold at most 50 of PostgreSQL's
    # default 100.
    db_pool_size: int = 10
    # Connections opened past `db_pool_size` under load (see above: none).
    db_max_overflow: int = 0
    # The `iss` of the access tokens: auth's public URL (its path /auth behind the gateway).
    jwt_issuer: str = "http://127.0.0.1:8080/auth"
    # The `aud` of the access tokens, which every resource server requires.
    jwt_audience: str = "stack"
    # Clock skew allowed on `exp`, `nbf` and `iat` when verifying a token.
    jwt_leeway_seconds: int = 30
    # How long a resource server remembers a revoked user (from the event log): as long as a
    # token issued before the revocation could verify, i.e. auth's access-token lifetime plus
    # the leeway.
    revocation_window_seconds: float = 15 * 60 + 30
