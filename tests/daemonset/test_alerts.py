"""daemonset/alerts.yaml: valid, unit-tested, documented, and speaking the metric contract."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import MetricContract, Promtool

REPO = Path(__file__).resolve().parents[2]
DAEMONSET = REPO / "daemonset"
ALERTS = DAEMONSET / "alerts.yaml"
UNIT_TESTS = Path(__file__).resolve().parent / "alerts_test.yaml"
RUNBOOK = DAEMONSET / "runbook.md"
RUNBOOK_URL = "https://github.com/netagent/netagent/blob/main/daemonset/runbook.md"

EXPECTED_ALERTS = {
    "NetagentNeighbourTableNearFull": "warning",
    "NetagentNeighbourTableFull": "critical",
    "NetagentNeighbourTableFillingUp": "warning",
    "NetagentConntrackTableFillingUp": "warning",
    "NetagentConntrackNearFull": "warning",
    "NetagentConntrackFull": "critical",
    "NetagentConntrackInsertFailed": "warning",
    "NetagentConntrackDrops": "critical",
    "NetagentOverlayPeersMissing": "critical",
    "NetagentDNSSlow": "warning",
    "NetagentDNSFailing": "critical",
    "NetagentSourceDown": "warning",
    "NetagentCheckCritical": "critical",
    "NetagentAbsent": "warning",
    "NetagentNodeUnlikeFleet": "warning",
    "NetagentRemediationFailed": "warning",
    "NetagentRemediationCeilingReached": "critical",
    "NetagentKubernetesReportingFailing": "warning",
}
# What each fleet recording rule's `metric` label names: `netagent fleet`'s metrics.
RECORDED_LABELS = {"metric"}

SELECTOR = re.compile(r"\b((?:netagent_[a-z_]+)|up)\s*\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def every_rule() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rules() -> list[dict[str, Any]]:
    """The alerting rules."""
    return [rule for rule in every_rule() if "alert" in rule]


def recorded() -> list[dict[str, Any]]:
    return [rule for rule in every_rule() if "record" in rule]


def test_promtool_check_rules(promtool: Promtool) -> None:
    result = promtool.run("check", "rules", str(ALERTS.relative_to(REPO)))
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"


def test_promtool_unit_tests(promtool: Promtool) -> None:
    result = promtool.run("test", "rules", str(UNIT_TESTS.relative_to(REPO)))
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


def test_the_node_group_and_the_fleet_group() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert [group["name"] for group in groups] == ["netagent", "netagent-fleet"]


def test_the_fleet_recording_rules_cover_the_metrics_netagent_fleet_tests(
        contract: MetricContract) -> None:
    from netagent.fleet.analysis import METRICS

    inputs = [r for r in recorded() if r["record"] == "netagent:fleet_input"]
    assert sorted(r["labels"]["metric"] for r in inputs) == sorted(METRICS)
    for rule in recorded():
        assert rule["record"].startswith("netagent:"), rule["record"]
        names = set(re.findall(r"\bnetagent_[a-z_]+", rule["expr"]))
        assert names <= contract.series_names(), names - contract.series_names()
    stats = {r["record"] for r in recorded()} - {"netagent:fleet_input"}
    assert stats == {"netagent:fleet_input:mean", "netagent:fleet_input:stddev",
                     "netagent:fleet_input:nodes", "netagent:fleet_input:zscore"}


def test_the_documented_alerts_with_their_severity() -> None:
    assert {rule["alert"]: rule["labels"]["severity"] for rule in rules()} == EXPECTED_ALERTS


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_annotations(rule: dict[str, Any]) -> None:
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    if not rule["expr"].startswith("absent("):  # an absent series has no labels to name
        assert "{{ $labels." in annotations["summary"], "summary should name what fired"
        assert "{{ $labels.instance }}" in annotations["description"], "which node?"
    assert annotations["runbook_url"] == f"{RUNBOOK_URL}#{rule['alert'].lower()}"


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_runbook_has_a_section(rule: dict[str, Any]) -> None:
    # GitHub's anchor for "## NetagentFoo" is "#netagentfoo".
    headings = re.findall(r"^## (\S+)$", RUNBOOK.read_text(), re.M)
    assert rule["alert"] in headings


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_expression_speaks_the_metric_contract(
    rule: dict[str, Any], contract: MetricContract
) -> None:
    expr = rule["expr"]
    names = set(re.findall(r"\bnetagent_[a-z_]+", expr))
    assert names <= contract.series_names(), (
        f"not in the metric contract: {names - contract.series_names()}"
    )
    for name, matchers in SELECTOR.findall(expr):
        for label, _, value in MATCHER.findall(matchers):
            allowed = {"job"} if name == "up" else contract.labels_of(name)
            assert label in allowed, f"{name} has no label {label!r}"
            if name == "netagent_conntrack_events_total" and label == "event":
                assert set(value.split("|")) <= contract.conntrack_events, value
    for clause in GROUPING.findall(expr):
        labels = {label.strip() for label in clause.split(",") if label.strip()}
        known = contract.all_labels() | RECORDED_LABELS
        assert labels <= known, f"unknown labels {labels - known}"


# --- the PrometheusRule is generated from alerts.yaml -------------------------------


def load_renderer() -> Any:
    path = Path(__file__).resolve().parent / "render_prometheusrule.py"
    spec = importlib.util.spec_from_file_location("render_prometheusrule", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prometheusrule_carries_the_same_groups() -> None:
    rule_file = yaml.safe_load(ALERTS.read_text())
    prometheus_rule = yaml.safe_load((DAEMONSET / "base" / "prometheusrule.yaml").read_text())
    assert prometheus_rule["kind"] == "PrometheusRule"
    assert prometheus_rule["spec"] == {"groups": rule_file["groups"]}


def test_prometheusrule_is_generated_from_alerts() -> None:
    rendered = load_renderer().render(ALERTS.read_text())
    assert (DAEMONSET / "base" / "prometheusrule.yaml").read_text() == rendered, (
        "daemonset/base/prometheusrule.yaml is stale: run "
        "python tests/daemonset/render_prometheusrule.py"
    )


# --- the unit tests cover every alert, on series shaped like the exporter's ------------


def unit_tests() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(UNIT_TESTS.read_text())
    return loaded


def test_unit_tests_load_the_rule_file() -> None:
    (rule_file,) = unit_tests()["rule_files"]
    assert (UNIT_TESTS.parent / rule_file).resolve() == ALERTS


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_every_alert_is_tested_firing_and_silent(alert: str) -> None:
    cases = [
        case
        for group in unit_tests()["tests"]
        for case in group.get("alert_rule_test", [])
        if case["alertname"] == alert
    ]
    assert any(case.get("exp_alerts") for case in cases), f"{alert} is never shown firing"
    assert any(not case.get("exp_alerts") for case in cases), f"{alert} is never shown silent"
    for case in cases:
        for expected in case.get("exp_alerts") or []:
            assert expected["exp_labels"]["severity"] == EXPECTED_ALERTS[alert]
            assert set(expected["exp_annotations"]) == {"summary", "description", "runbook_url"}


def test_unit_test_series_look_like_the_exporters(contract: MetricContract) -> None:
    for group in unit_tests()["tests"]:
        for series in group["input_series"]:
            name, _, rest = series["series"].partition("{")
            labels = {label for label, _, _ in MATCHER.findall(rest)}
            if name == "up":
                assert labels == {"job", "instance"}
                continue
            assert name in contract.series_names(), name
            assert "instance" in labels, series["series"]
            assert labels <= contract.labels_of(name), f"{series['series']}: {labels}"
