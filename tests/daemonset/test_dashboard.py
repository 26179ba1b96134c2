"""daemonset/base/dashboard.json: valid Grafana JSON whose queries use only contract metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import MetricContract, Promtool

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "daemonset" / "base" / "dashboard.json"

# Grafana variables, replaced by something PromQL parses.
VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}


def recorded() -> set[str]:
    """The series the recording rules of daemonset/alerts.yaml make."""
    groups = yaml.safe_load((REPO / "daemonset" / "alerts.yaml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable."""
    found = [
        (panel["title"], target["expr"])
        for panel in panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append(
                (f"${variable['name']}", query["query"] if isinstance(query, dict) else query)
            )
    return found


def test_dashboard_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] == "netagent"
    assert board["title"]
    ids = [panel["id"] for panel in panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board["panels"]):
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys(), panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], f"{panel['title']} has no query"


@pytest.mark.parametrize("where, expr", queries(), ids=[where for where, _ in queries()])
def test_queries_use_only_contract_metrics(where: str, expr: str, contract: MetricContract) -> None:
    names = set(re.findall(r"netagent_[a-z_]+", expr))
    records = set(re.findall(r"netagent:[a-z_:]+", expr))
    assert names or records, f"{where}: no netagent metric in {expr!r}"
    assert records <= recorded(), f"{where}: not recorded in alerts.yaml: {records - recorded()}"
    unknown = names - contract.series_names()
    assert not unknown, f"{where}: not in the metric contract: {sorted(unknown)}"


def test_the_promised_panels_are_there() -> None:
    by_title = {panel["title"]: panel for panel in panels(dashboard()["panels"])}
    expr = {
        title: " ".join(t["expr"] for t in p.get("targets", [])) for title, p in by_title.items()
    }

    neighbour = expr["Neighbour table utilisation"]
    assert "netagent_neighbour_gc_entries" in neighbour
    assert 'netagent_neighbour_gc_thresh{instance=~"$instance", level="3"}' in neighbour
    conntrack = expr["Conntrack utilisation"]
    assert "netagent_conntrack_entries" in conntrack and "netagent_conntrack_max" in conntrack
    assert "netagent_overlay_peers_missing" in expr["Overlay peers missing"]
    forecast = expr["Time to full (forecast)"]
    assert "netagent_neighbour_exhaustion_seconds" in forecast
    assert "netagent_conntrack_exhaustion_seconds" in forecast
    assert by_title["Time to full (forecast)"]["fieldConfig"]["defaults"]["unit"] == "s"
    assert "netagent_neighbour_nodes_until_full" in expr[
        "Nodes until the neighbour table is full"]

    heatmap = by_title["DNS probe latency"]
    assert heatmap["type"] == "heatmap"
    assert heatmap["targets"][0]["format"] == "heatmap"
    assert "netagent_dns_probe_duration_seconds_bucket" in expr["DNS probe latency"]

    reporting = expr["Kubernetes reporting"]
    assert "netagent_kubernetes_requests_total" in reporting
    assert "netagent_kubernetes_events_dropped_total" in reporting

    assert "netagent:fleet_input:zscore" in expr["Fleet: z-score per node and metric"]
    assert "netagent:fleet_input:zscore" in expr["Fleet: nodes furthest from the mean"]

    for title, metric in (
        ("Check status", "netagent_check_status"),
        ("Source up", "netagent_source_up"),
    ):
        assert by_title[title]["type"] == "table"
        assert metric in expr[title]


def test_queries_are_valid_promql(promtool: Promtool, tmp_path: Path) -> None:
    # promtool parses PromQL only inside rule files: check each query as a recording rule.
    rules = []
    for index, (_, expr) in enumerate(queries()):
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    rule_file = tmp_path / "dashboard_queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool.run("check", "rules", str(rule_file))
    assert result.returncode == 0, (
        f"a dashboard query is not PromQL:\n{result.stdout}{result.stderr}"
    )
