"""Writes the provisioned Grafana dashboards from the compact definitions below, so that every
panel has a unit, a description, the datasource variable and `$__rate_interval`. Run
`uv run python -m devstack.dashboards` after editing; a test fails when the JSON files and
this module disagree.

The dashboards have one home, inside the chart (a chart reads only files in its own
directory): compose's Grafana mounts the same folder.
"""

import json
from dataclasses import dataclass

from devstack import ROOT

OUT = ROOT / "deploy" / "helm" / "stack" / "files" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
R = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    kind: str = "timeseries"


def by_job(metric_expr: str) -> str:
    return f"sum by (job) ({metric_expr})"


def quantile(q: float, buckets: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({buckets}[{R}])))"


DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "stack-overview": (
        "Stack overview",
        [
            Panel(
                "Requests per second",
                "HTTP requests answered, per service.",
                "reqps",
                ((by_job(f"rate(http_requests_total[{R}])"), "{{job}}"),),
            ),
            Panel(
                "5xx ratio",
                "Share of requests answered with a 5xx, per service; 0 when none failed.",
                "percentunit",
                (
                    (
                        f'(sum by (job) (rate(http_requests_total{{status=~"5.."}}[{R}]))'
                        f" or sum by (job) (rate(http_requests_total[{R}])) * 0)"
                        f" / clamp_min(sum by (job) (rate(http_requests_total[{R}])), 1e-9)",
                        "{{job}}",
                    ),
                ),
            ),
            Panel(
                "p95 latency",
                "95th percentile of request duration, per service (streams excluded).",
                "s",
                (
                    (
                        quantile(0.95, "http_request_duration_seconds_bucket", by="job, le"),
                        "{{job}}",
                    ),
                ),
            ),
            Panel(
                "In-flight requests",
                "Requests being handled right now, per service.",
                "short",
                ((by_job("http_requests_inprogress"), "{{job}}"),),
            ),
            Panel(
                "Targets up",
                "Scrape targets answering (1) or not (0), per replica.",
                "short",
                (("up", "{{job}} {{instance}}"),),
            ),
        ],
    ),
    "gateway": (
        "Gateway (nginx)",
        [
            Panel(
                "Requests per second",
                "Requests nginx accepted (all locations).",
                "reqps",
                ((f"sum(rate(nginx_http_requests_total[{R}]))", "requests"),),
            ),
            Panel(
                "Active connections",
                "Open client connections by state.",
                "short",
                (
                    ("sum(nginx_connections_active)", "active"),
                    ("sum(nginx_connections_reading)", "reading"),
                    ("sum(nginx_connections_writing)", "writing"),
                    ("sum(nginx_connections_waiting)", "waiting"),
                ),
            ),
            Panel(
                "Connections accepted vs handled",
                "A gap means nginx dropped connections (worker_connections reached).",
                "cps",
                (
                    (f"sum(rate(nginx_connections_accepted[{R}]))", "accepted"),
                    (f"sum(rate(nginx_connections_handled[{R}]))", "handled"),
                ),
            ),
            Panel(
                "nginx up",
                "Whether the exporter can read stub_status.",
                "short",
                (("nginx_up", "{{instance}}"),),
            ),
        ],
    ),
    "auth": (
        "auth-service",
        [
            Panel(
                "Logins by outcome",
                "Password logins per second, by outcome.",
                "reqps",
                ((f"sum by (outcome) (rate(auth_logins_total[{R}]))", "{{outcome}}"),),
            ),
            Panel(
                "Sign-ins by method and outcome",
                "Sign-ins per second: password, passkey, or through an OpenID provider (oidc: "
                "success, refused, conflict with an existing account, inactive, provider "
                "unavailable).",
                "reqps",
                (
                    (
                        f"sum by (method, outcome) (rate(auth_sign_ins_total[{R}]))",
                        "{{method}} {{outcome}}",
                    ),
                ),
            ),
            Panel(
                "Tokens issued",
                "Token pairs issued per second, by grant type.",
                "reqps",
                ((f"sum by (grant) (rate(auth_tokens_issued_total[{R}]))", "{{grant}}"),),
            ),
            Panel(
                "Refresh-token reuse detected",
                "Spent refresh tokens presented again (each revokes a session family).",
                "short",
                ((f"sum(increase(auth_refresh_reuse_detected_total[{R}]))", "reuse"),),
            ),
            Panel(
                "Token endpoint p95",
                "Latency of POST /auth/token: argon2 verification dominates it.",
                "s",
                (
                    (
                        quantile(
                            0.95,
                            'http_request_duration_seconds_bucket{job="auth",handler="/auth/token"}',
                        ),
                        "p95",
                    ),
                ),
            ),
            Panel(
                "Verified-token latency p95",
                "Latency of GET /auth/users/me: token verification plus one read.",
                "s",
                (
                    (
                        quantile(
                            0.95,
                            'http_request_duration_seconds_bucket{job="auth",handler="/auth/users/me"}',
                        ),
                        "p95",
                    ),
                ),
            ),
            Panel(
                "Logins throttled",
                "Password grants refused with 429: an account locked after repeated failures.",
                "reqps",
                ((f'sum(rate(auth_logins_total{{outcome="throttled"}}[{R}]))', "throttled"),),
            ),
            Panel(
                "Emails by kind and outcome",
                "Verification and reset messages: sent, failed after retries, dropped (queue "
                "full), disabled (no SMTP_HOST).",
                "short",
                (
                    (
                        f"sum by (kind, outcome) (increase(auth_emails_sent_total[{R}]))",
                        "{{kind}} {{outcome}}",
                    ),
                ),
            ),
            Panel(
                "Password resets",
                "Passwords set from a reset link (each ends every session of its account).",
                "short",
                ((f"sum(increase(auth_password_resets_total[{R}]))", "resets"),),
            ),
        ],
    ),
    "realtime": (
        "realtime-service",
        [
            Panel(
                "Connections by transport",
                "Open SSE streams and WebSockets.",
                "short",
                (("sum by (transport) (realtime_connections)", "{{transport}}"),),
            ),
            Panel(
                "Events written vs delivered",
                "Events committed by api-service, and log"
                " events written to clients (one event reaches many clients).",
                "ops",
                (
                    (f"sum(rate(api_events_written_total[{R}]))", "written"),
                    (
                        f"sum by (transport) (rate(realtime_events_delivered_total[{R}]))",
                        "delivered {{transport}}",
                    ),
                ),
            ),
            Panel(
                "Delivery latency",
                "From the event's commit to its write on the client's socket.",
                "s",
                (
                    (
                        quantile(0.5, "realtime_delivery_latency_seconds_bucket"),
                        "p50",
                    ),
                    (
                        quantile(0.99, "realtime_delivery_latency_seconds_bucket"),
                        "p99",
                    ),
                ),
            ),
            Panel(
                "Disconnects by code",
                "Connections the server ended, by close code.",
                "ops",
                (
                    (
                        f"sum by (transport, code) (rate(realtime_disconnects_total[{R}]))",
                        "{{transport}} {{code}}",
                    ),
                ),
            ),
            Panel(
                "Replays by result",
                "Resumptions from a last event id: ok, or reset.",
                "ops",
                ((f"sum by (result) (rate(realtime_replays_total[{R}]))", "{{result}}"),),
            ),
            Panel(
                "Sequencer lag",
                "Age of the oldest event still in api-service's inbox, measured from the"
                " database by every api replica when scraped: a transaction held open, or no"
                " sequencer running, holds events back.",
                "s",
                (("max(api_outbox_sequencer_lag_seconds)", "lag"),),
            ),
            Panel(
                "Inbox rows and batches",
                "Events written but not yet in the log, and batches the sequencer commits.",
                "short",
                (
                    # Every replica measures the same inbox: max, not sum.
                    ("max(api_outbox_inbox_rows)", "inbox rows"),
                    (f"sum(rate(api_outbox_batches_total[{R}]))", "batches/s"),
                ),
            ),
            Panel(
                "Sequencer leader",
                "1 on the api replica holding the sequencer lease (exactly one expected).",
                "short",
                (("sum by (instance) (api_outbox_sequencer_leader)", "{{instance}}"),),
            ),
            Panel(
                "Gap repairs by reason",
                "Missing events read from the log while following NATS: a skipped id, the"
                " sequencer's head ahead of what arrived, or a bus reconnect.",
                "ops",
                ((f"sum by (reason) (rate(realtime_gap_repairs_total[{R}]))", "{{reason}}"),),
            ),
            Panel(
                "Bus connection",
                "1 while a realtime node is connected to NATS (0 without NATS).",
                "short",
                (("sum by (instance) (realtime_bus_connected)", "{{instance}}"),),
            ),
            Panel(
                "Log queries by purpose",
                "Event-log queries made by realtime nodes: with NATS only replays and repairs.",
                "ops",
                ((f"sum by (purpose) (rate(realtime_log_queries_total[{R}]))", "{{purpose}}"),),
            ),
        ],
    ),
    "postgresql": (
        "PostgreSQL",
        [
            Panel(
                "PostgreSQL up",
                "Whether postgres_exporter reaches the database.",
                "short",
                (("pg_up", "{{instance}}"),),
            ),
            Panel(
                "Connections by state",
                "Backends by state, against max_connections.",
                "short",
                (
                    ("sum by (state) (pg_stat_activity_count)", "{{state}}"),
                    ("max(pg_settings_max_connections)", "max"),
                ),
            ),
            Panel(
                "Transactions per second",
                "Commits and rollbacks, all databases.",
                "ops",
                (
                    (f"sum(rate(pg_stat_database_xact_commit[{R}]))", "commits"),
                    (f"sum(rate(pg_stat_database_xact_rollback[{R}]))", "rollbacks"),
                ),
            ),
            Panel(
                "Rows written per second",
                "Inserted, updated and deleted rows.",
                "ops",
                (
                    (f"sum(rate(pg_stat_database_tup_inserted[{R}]))", "inserted"),
                    (f"sum(rate(pg_stat_database_tup_updated[{R}]))", "updated"),
                    (f"sum(rate(pg_stat_database_tup_deleted[{R}]))", "deleted"),
                ),
            ),
        ],
    ),
}


def panel_json(panel: Panel, index: int) -> dict[str, object]:
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + n),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for n, (expr, legend) in enumerate(panel.queries)
        ],
    }


def dashboard_json(uid: str, title: str, panels: list[Panel]) -> dict[str, object]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["stack"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "prometheus"},
                }
            ]
        },
        "panels": [panel_json(panel, index) for index, panel in enumerate(panels)],
    }


def rendered() -> dict[str, str]:
    return {
        f"{uid}.json": json.dumps(dashboard_json(uid, title, panels), indent=2) + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
