from prometheus_client import Counter, Gauge, Histogram

TRANSPORTS = ("sse", "ws")

CONNECTIONS = Gauge("realtime_connections", "Open connections", ["transport"])
EVENTS_DELIVERED = Counter(
    "realtime_events_delivered", "Log events written to clients", ["transport"]
)
DELIVERY_LATENCY = Histogram(
    "realtime_delivery_latency_seconds",
    "From the event's commit to its write on the client's socket",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DISCONNECTS = Counter(
    "realtime_disconnects", "Connections ended by the server, by close code", ["transport", "code"]
)
REPLAYS = Counter("realtime_replays", "Resumptions from a last event id", ["result"])

# The close codes of DESIGN §7 that the server sends (SSE uses the same codes in `disconnect`).
SERVER_CLOSE_CODES = {
    "sse": (1012, 4001, 4002, 4403),
    "ws": (1008, 1009, 1012, 4001, 4002, 4008, 4029, 4400, 4401, 4403),
}

# Every series exists from the start, so rates and ratios over them never come out empty.
for transport in TRANSPORTS:
    CONNECTIONS.labels(transport=transport)
    EVENTS_DELIVERED.labels(transport=transport)
    for code in SERVER_CLOSE_CODES[transport]:
        DISCONNECTS.labels(transport=transport, code=str(code))
for result in ("ok", "reset"):
    REPLAYS.labels(result=result)
