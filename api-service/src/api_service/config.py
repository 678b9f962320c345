from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "api-service"
    # Where auth-service publishes its signing keys; fetched at start and on an unknown `kid`.
    jwks_url: str = "http://127.0.0.1:8001/auth/.well-known/jwks.json"
    # How long events stay in the log: the furthest back a client can resume from (older
    # cursors get a reset). Pruned every `event_prune_interval_seconds`.
    event_retention_seconds: int = 7 * 24 * 3600
    event_prune_interval_seconds: int = 300
    # The event sequencer (eventlog.sequencer): one replica at a time holds a lease of this
    # length, renewed well before it runs out; batches move at most `sequencer_batch_size`
    # events. It polls every `sequencer_poll_min_seconds` while events arrive, backing off to
    # `sequencer_poll_max_seconds` when idle: the delivery latency it adds when idle.
    sequencer_lease_seconds: float = 5.0
    sequencer_batch_size: int = 1000
    sequencer_poll_min_seconds: float = 0.002
    sequencer_poll_max_seconds: float = 0.05
    # The inbox is vacuumed by the api replicas themselves once its dead tuples pass this bound
    # (eventlog.vacuum), checked every `inbox_vacuum_check_seconds`.
    inbox_vacuum_dead_rows: int = 10_000
    inbox_vacuum_check_seconds: float = 10.0
    # Core NATS: when set, committed batches are published there instead of one NOTIFY each.
    nats_url: str | None = None
    # How often the log is read for revoked users (deactivation, password reset): the most a
    # revoked user's token keeps working here after the event reaches the log.
    revocation_poll_seconds: float = 1.0
