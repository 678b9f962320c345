"""Draws a bench/event_pipeline.py run: writer throughput against writers for each writer
statement, delivery latency percentiles against subscribers, and the realtime nodes' log
queries against nodes. PNGs go to bench/plots/.

    uv run python -m bench.plot_event_pipeline [bench/results/event_pipeline-<time>.json]
"""

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).parents[1]
PLOTS = ROOT / "bench" / "plots"


def writers(record: dict[str, Any], caption: str) -> Path:
    figure, axes = plt.subplots(figsize=(6, 4))
    clients = sorted({row["clients"] for row in record["writers"]})
    for name in ("plain", "inbox", "lock+notify"):
        medians = [
            statistics.median(r[name] for r in record["writers"] if r["clients"] == c)
            for c in clients
        ]
        axes.plot(clients, medians, marker="o", label=name)
    axes.set_xlabel("concurrent writers (pgbench clients)")
    axes.set_ylabel("transactions/s (median of rounds)")
    axes.set_title("Event-writing throughput in PostgreSQL alone")
    axes.set_xticks(clients)
    axes.set_ylim(bottom=0)
    axes.legend()
    return save(figure, "event_writers.png", caption)


def latency(record: dict[str, Any], caption: str) -> Path:
    figure, axes = plt.subplots(figsize=(6, 4))
    for mode in ("postgresql", "nats"):
        runs = sorted(
            (
                r
                for r in record["delivery"]
                if r["mode"] == mode and r["nodes"] == 1 and "error" not in r
            ),
            key=lambda r: r["subscribers"],
        )
        subscribers = [r["subscribers"] for r in runs]
        axes.plot(subscribers, [r["p50_ms"] for r in runs], marker="o", label=f"{mode} p50")
        axes.plot(subscribers, [r["p99_ms"] for r in runs], marker="s", label=f"{mode} p99")
    axes.axhline(100, color="grey", linestyle="--", label="target p99")
    axes.set_xlabel("SSE subscribers through the gateway (1 realtime node)")
    axes.set_ylabel("create response to last subscriber (ms)")
    axes.set_title("Delivery latency at 20 events/s")
    axes.set_ylim(bottom=0)
    axes.legend()
    return save(figure, "event_delivery_latency.png", caption)


def reads(record: dict[str, Any], caption: str) -> Path:
    figure, axes = plt.subplots(figsize=(6, 4))
    for mode in ("postgresql", "nats"):
        runs = sorted(
            (
                r
                for r in record["delivery"]
                if r["mode"] == mode and r["subscribers"] >= 1000 and "error" not in r
            ),
            key=lambda r: r["nodes"],
        )
        axes.plot(
            [r["nodes"] for r in runs],
            [r["log_queries_per_s_total"] for r in runs],
            marker="o",
            label=mode,
        )
    axes.set_xticks(sorted({r["nodes"] for r in record["delivery"]}))
    axes.set_xlabel("realtime nodes")
    axes.set_ylabel("event-log queries/s, all nodes")
    axes.set_title("Database reads by realtime nodes at 20 events/s")
    axes.set_ylim(bottom=0)
    axes.legend()
    return save(figure, "event_log_reads.png", caption)


def save(figure: Any, name: str, caption: str) -> Path:
    figure.text(0.01, 0.01, caption, fontsize=7, color="grey")
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    PLOTS.mkdir(exist_ok=True)
    path = PLOTS / name
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main(path: Path | None) -> None:
    if path is None:
        path = sorted((ROOT / "bench" / "results").glob("event_pipeline-*.json"))[-1]
    record = json.loads(path.read_text())
    caption = (
        f"{path.name}: {record['cores']} shared cores, load {record['load_before'][0]:.1f};"
        " noisy machine"
    )
    for drawn in (writers(record, caption), latency(record, caption), reads(record, caption)):
        print(f"wrote {drawn.relative_to(ROOT)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("result", nargs="?", type=Path)
    main(parser.parse_args().result)
