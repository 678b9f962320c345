"""The docs name what the code has: every metric a service registers is in contract.md §8 and
every name there is registered; every alert of the Prometheus rules is in operations.md."""

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import api_service.main
import auth_service.main
import realtime_service.main

ROOT = Path(__file__).resolve().parent.parent
APPS = (auth_service.main.app, api_service.main.app, realtime_service.main.app)
# prometheus_client's own collectors, which every Python process exports.
CLIENT_LIBRARY_PREFIXES = ("process_", "python_")


def section(markdown: Path, heading: str) -> str:
    return markdown.read_text().split(heading, 1)[1].split("\n## ", 1)[0]


def table_names(text: str) -> set[str]:
    """The names in backticks in the first column of a Markdown table."""
    rows = re.findall(r"^\| ([^|]+) \|", text, re.MULTILINE)
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row)}


def registered_metrics() -> set[str]:
    """Every metric the three services' processes register, as Prometheus exposes its name."""
    assert all(APPS)
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith(CLIENT_LIBRARY_PREFIXES):
            continue
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def test_every_metric_is_in_the_contract_and_every_name_there_is_a_metric() -> None:
    documented = table_names(section(ROOT / "docs" / "contract.md", "## 8. Metrics"))
    registered = registered_metrics()
    assert "realtime_connections" in registered
    assert not registered - documented, "add these to docs/contract.md §8"
    assert not documented - registered, "docs/contract.md §8 names metrics nobody registers"


def test_every_alert_is_in_operations() -> None:
    rules_file = ROOT / "deploy" / "prometheus" / "rules" / "stack.rules.yml"
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    table = section(ROOT / "docs" / "operations.md", "## Alerts")
    documented = set(re.findall(r"^\| (\w+) \|", table, re.MULTILINE)) - {"alert"}
    assert "OutboxSequencerLagging" in alerts
    assert not alerts - documented, "add these to the Alerts table of docs/operations.md"
    assert not documented - alerts, "docs/operations.md names alerts that do not exist"
