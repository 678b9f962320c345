from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "realtime-service"
    jwks_url: str = "http://127.0.0.1:8001/auth/.well-known/jwks.json"
    # Browsers send Origin on WebSockets; any other origin is closed with 1008. A client
    # without Origin (not a browser) is let through: it cannot be a cross-site page.
    allowed_origins: tuple[str, ...] = ("http://127.0.0.1:8080", "http://localhost:8080")
    ticket_ttl_seconds: int = 60
    ws_auth_timeout_seconds: float = 10.0
    token_expiry_warning_seconds: float = 60.0
    # SSE streams end this long before the token expires, so the client reconnects in time.
    sse_expiry_margin_seconds: float = 5.0
    heartbeat_seconds: float = 15.0
    sse_retry_ms: int = 3000
    poll_interval_seconds: float = 1.0
    # Core NATS: when set, events arrive from the bus (the log is read only to repair gaps).
    nats_url: str | None = None
    # Per connection: events waiting to be written. A client further behind is cut off
    # (it resumes from its last event id, losing nothing).
    queue_limit: int = 1000
    max_channels: int = 20
    max_ws_message_bytes: int = 8192
    max_publish_bytes: int = 4096
    publish_rate_per_second: float = 10.0
    publish_burst: int = 20
