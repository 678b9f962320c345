from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "realtime-service"
    # Where auth-service publishes its signing keys; fetched at start and on an unknown `kid`.
    jwks_url: str = "http://127.0.0.1:8001/auth/.well-known/jwks.json"
    # Browsers send Origin on WebSockets; any other origin is closed with 1008. A client
    # without Origin (not a browser) is let through: it cannot be a cross-site page.
    allowed_origins: tuple[str, ...] = ("http://127.0.0.1:8080", "http://localhost:8080")
    # How long a one-time connection ticket (POST /realtime/tickets) stays valid.
    ticket_ttl_seconds: int = 60
    # A WebSocket without a ticket must send its `auth` message within this, or gets 4008.
    ws_auth_timeout_seconds: float = 10.0
    # A WebSocket is warned (`token_expiring`) this long before its token expires.
    token_expiry_warning_seconds: float = 60.0
    # SSE streams end this long before the token expires, so the client reconnects in time.
    sse_expiry_margin_seconds: float = 5.0
    # A heartbeat (SSE comment, WebSocket `ping`) goes out this often on an idle connection;
    # clients treat two missed heartbeats as a stalled connection.
    heartbeat_seconds: float = 15.0
    # The SSE `retry:` field: how long a browser's EventSource waits before reconnecting.
    sse_retry_ms: int = 3000
    # Without NATS, how often the log is read when no notification arrived (the fallback
    # against a missed NOTIFY).
    poll_interval_seconds: float = 1.0
    # Core NATS: when set, events arrive from the bus (the log is read only to repair gaps).
    nats_url: str | None = None
    # Per connection: events waiting to be written. A client further behind is cut off
    # (it resumes from its last event id, losing nothing).
    queue_limit: int = 1000
    # Channels one connection may follow.
    max_channels: int = 20
    # The largest WebSocket message a client may send (larger: 1009); uvicorn's frame cap
    # (servicekit.serve) matches it.
    max_ws_message_bytes: int = 8192
    # The largest `data` of an ephemeral `publish` message.
    max_publish_bytes: int = 4096
    # Ephemeral publishes per connection: a token bucket of `publish_burst` refilled at
    # `publish_rate_per_second` (past it: 4029).
    publish_rate_per_second: float = 10.0
    publish_burst: int = 20
