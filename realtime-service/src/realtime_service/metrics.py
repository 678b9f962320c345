from prometheus_client import Counter, Gauge, Histogram

TRANSPORTS = ("sse", "ws")

CONNECTIONS = Gauge("realtime_connections", "Open connections", ["transport"])
EVENTS_DELIVERED = Counter(
    "realtime_events_delivered", "Log events written to clients", ["transport"]
)
# Bound once: a label lookup on every delivery to every connection adds up.
EVENTS_DELIVERED_BY_TRANSPORT = {t: EVENTS_DELIVERED.labels(transport=t) for t in TRANSPORTS}
DELIVERY_LATENCY = Histogram(
    "realtime_delivery_latency_seconds",
    "From the event's commit to its write on the client's socket",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DISCONNECTS = Counter(
    "realtime_disconnects", "Connections ended by the server, by close code", ["transport", "code"]
)
REPLAYS = Counter("realtime_replays", "Resumptions from a last event id", ["result"])
GAP_REPAIRS = Counter(
    "realtime_gap_repairs",
    "Reads of missing events from the log while following the bus, by what revealed the gap",
    ["reason"],
)
BUS_CONNECTED = Gauge("realtime_bus_connected", "1 while connected to NATS (0 without NATS)")
LOG_QUERIES = Counter(
    "realtime_log_queries", "Queries of the event log by this process, by purpose", ["purpose"]
)

# gap: a bus message skipped ids; head: the sequencer's head was past what arrived (the end of
# a burst was lost); reconnect: the bus connection came back.
GAP_REASONS = ("gap", "head", "reconnect")
LOG_QUERY_PURPOSES = ("start", "tail", "repair", "replay")

# The close codes of docs/contract.md §7 that the server sends (SSE uses the same codes in
# `disconnect`).
SERVER_CLOSE_CODES = {
    "sse": (1012, 4001, 4002, 4403),
    "ws": (1008, 1009, 1012, 4001, 4002, 4008, 4029, 4400, 4401, 4403),
}

# Every series exists from the start, so rates and ratios over them never come out empty.
for transport in TRANSPORTS:
    CONNECTIONS.labels(transport=transport)
    for code in SERVER_CLOSE_CODES[transport]:
        DISCONNECTS.labels(transport=transport, code=str(code))
for result in ("ok", "reset"):
    REPLAYS.labels(result=result)
for reason in GAP_REASONS:
    GAP_REPAIRS.labels(reason=reason)
for purpose in LOG_QUERY_PURPOSES:
    LOG_QUERIES.labels(purpose=purpose)
