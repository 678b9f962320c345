"""Grafana cannot run here: the dashboards are checked by parsing, not by looking."""

import promql_parser
import pytest
import yaml

from devstack.dashboards import rendered
from devstack.promql import (
    DASHBOARDS,
    GRAFANA_BUILTINS,
    PROVISIONING,
    dashboard_queries,
    dashboards,
    metric_names,
    substitute,
    variables_used,
)


def test_the_json_files_are_what_the_builder_writes() -> None:
    files = {path.name: path.read_text() for path in DASHBOARDS.glob("*.json")}
    assert files == rendered(), "run uv run python -m devstack.dashboards"
    assert len(files) == 5


@pytest.mark.parametrize("query", list(dashboard_queries()), ids=lambda q: q.where)
def test_every_query_is_valid_promql(query: object) -> None:
    expr = query.expr  # type: ignore[attr-defined]
    promql_parser.parse(substitute(expr))
    assert metric_names(expr), "a query that selects no metric"
    if "[" in expr:
        assert "[$__rate_interval]" in expr, "ranges follow the scrape interval"


def test_a_broken_query_would_be_caught() -> None:
    with pytest.raises(ValueError, match="parenthesis"):
        promql_parser.parse(substitute("sum(rate(http_requests_total[$__rate_interval])"))


def test_every_variable_is_defined_and_every_datasource_is_the_provisioned_one() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    for name, dashboard in dashboards().items():
        defined = {variable["name"] for variable in dashboard["templating"]["list"]}
        datasource = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
        assert datasource["current"]["value"] == uid, name
        for panel in dashboard["panels"]:
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["description"], where
            assert panel["fieldConfig"]["defaults"]["unit"], where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", where
                undefined = variables_used(target["expr"]) - defined - GRAFANA_BUILTINS
                assert not undefined, f"{where}: undefined {undefined}"
