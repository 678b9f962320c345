"""What the dashboard, rule and live observability checks share: every query, and the metrics
each one reads."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser
import yaml

from devstack import ROOT
from devstack.dashboards import OUT as DASHBOARDS

PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "stack.rules.yml"

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


@dataclass(frozen=True)
class Query:
    where: str
    expr: str


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def dashboard_queries() -> Iterator[Query]:
    for name, dashboard in dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                yield Query(f"{name}: {panel['title']} {target['refId']}", target["expr"])


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def substitute(expr: str, rate_interval: str = "1m") -> str:
    return expr.replace("$__rate_interval", rate_interval)


def variables_used(expr: str) -> set[str]:
    return set(_VARIABLE.findall(expr))


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects, from its syntax tree."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        name = getattr(node, "name", None)
        if type(node).__name__ == "VectorSelector" and name:
            names.add(name)
        for attribute in ("expr", "lhs", "rhs", "args", "param", "vector_selector"):
            child = getattr(node, attribute, None)
            for item in child if isinstance(child, list) else [child]:
                if item is not None and type(item).__module__.startswith("promql"):
                    walk(item)

    walk(promql_parser.parse(substitute(expr)))
    return names


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def exported_metric_names() -> set[str]:
    """The metrics the services and exporters must export for every query to have data."""
    queries = [q.expr for q in dashboard_queries()] + [rule["expr"] for rule in rules()]
    used = set().union(*(metric_names(expr) for expr in queries))
    return used - recorded_names()
