from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "api-service"
    jwks_url: str = "http://127.0.0.1:8001/auth/.well-known/jwks.json"
    event_retention_seconds: int = 7 * 24 * 3600
    event_prune_interval_seconds: int = 300
