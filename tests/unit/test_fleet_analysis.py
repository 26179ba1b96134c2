"""The fleet report from FleetData: status, nearest, headroom sizing, and the text."""

from __future__ import annotations

import json

import pytest

from netagent.fleet import analysis, render, stats
from netagent.fleet.analysis import FleetData, NodeTable
from netagent.model import Status

T_ISF = stats.student_t_isf()
HOUR = 3600.0


def data(**changes: object) -> FleetData:
    base = dict(
        at=10 * HOUR, window=HOUR, horizon=24 * HOUR,
        tables={"neighbour_ipv4": {f"n{i}": NodeTable(300 + i, 1024, 300 + i)
                                   for i in range(8)}},
        rates={}, statuses={f"n{i}": {"neighbour.ipv4": 0} for i in range(8)},
        cluster_nodes=((9 * HOUR, 100.0), (10 * HOUR, 100.0)))
    base.update(changes)
    return FleetData(**base)  # type: ignore[arg-type]


def test_a_critical_node_makes_the_fleet_critical_and_an_unknown_one_is_counted() -> None:
    statuses = {f"n{i}": {"neighbour.ipv4": 0, "dns.10.96.0.10": 0} for i in range(8)}
    statuses["n3"] = {"neighbour.ipv4": 2, "dns.10.96.0.10": 3}
    statuses["n5"] = {"neighbour.ipv4": 3}
    report = analysis.analyse(data(statuses=statuses), alpha=0.05, t_isf=T_ISF)
    assert report.status is Status.CRITICAL
    assert report.counts == {"ok": 6, "warning": 0, "critical": 1, "unknown": 1}
    assert report.unhealthy["critical"] == ("n3",)


def test_nearest_is_ranked_by_utilisation_not_by_count() -> None:
    tables = {"neighbour_ipv4": {"big": NodeTable(2000, 8192), "small": NodeTable(900, 1024),
                                 **{f"n{i}": NodeTable(100, 1024) for i in range(6)}}}
    report = analysis.analyse(data(tables=tables), alpha=0.05, t_isf=T_ISF)
    assert [n.node for n in report.nearest][:2] == ["small", "big"]
    assert len(report.nearest) == analysis.NEAREST


def test_forecasts_that_disagree_are_sized_at_half() -> None:
    """A trend forecast of 3,000 entries and a node-growth one of ~400 (a flat cluster)
    differ by far more than 20%: the larger, at 50% -> 6,000 -> 6,144."""
    tables = {"neighbour_ipv4": {f"n{i}": NodeTable(400, 1024, 3000 if i == 0 else 400)
                                 for i in range(8)}}
    (room,) = analysis.analyse(data(tables=tables), alpha=0.05, t_isf=T_ISF).headroom
    assert room.trend_peak == 3000 and room.growth_peak == pytest.approx(400)
    assert room.ratio == 0.5 and room.needed == 6144
    assert room.rollout["net.ipv4.neigh.default.gc_thresh3"] == 6144
    assert room.rollout["net.ipv4.neigh.default.gc_thresh2"] == 3072
    assert room.rollout["net.ipv4.neigh.default.gc_thresh1"] == 768
    assert room.seconds_to_full is None  # the cluster does not grow
    assert room.first_node == "n0" and room.nodes_at_full == 256  # 1024 / (400 / 100)


def test_a_node_already_over_its_limit_at_todays_size() -> None:
    tables = {"neighbour_ipv4": {f"n{i}": NodeTable(1100 if i == 2 else 300, 1024)
                                 for i in range(8)}}
    (room,) = analysis.analyse(data(tables=tables), alpha=0.05, t_isf=T_ISF).headroom
    assert room.first_node == "n2" and room.seconds_to_full == 0


def test_conntrack_has_one_forecast_and_buckets_a_quarter_of_max() -> None:
    tables = {"conntrack": {f"n{i}": NodeTable(100_000, 131072, 140_000) for i in range(8)}}
    (room,) = analysis.analyse(data(tables=tables), alpha=0.05, t_isf=T_ISF).headroom
    assert room.ratio == 0.5 and room.needed == 280_576  # 280,000 rounded up to 1024s
    assert room.rollout == {"net.netfilter.nf_conntrack_max": 280_576}
    assert room.hashsize == 70_144


def test_without_the_node_count_there_is_one_forecast() -> None:
    (room,) = analysis.analyse(data(cluster_nodes=()), alpha=0.05, t_isf=T_ISF).headroom
    assert room.first_node is None and room.ratio == 0.5
    assert "netagent_cluster_nodes is not in Prometheus" in room.note


def test_the_text_and_json_agree() -> None:
    tables = {"neighbour_ipv4": {f"n{i}": NodeTable(900 if i == 4 else 300, 1024)
                                 for i in range(20)}}
    report = analysis.analyse(data(tables=tables, statuses={}), alpha=0.05, t_isf=T_ISF)
    doc = json.loads(render.as_json(report))
    assert set(doc) >= {"nodes", "status", "outliers", "nearest", "headroom"}
    (odd,) = doc["outliers"]
    assert set(odd) == {"metric", "node", "value", "mean", "stddev", "g", "critical"}
    assert (odd["metric"], odd["node"]) == ("neighbour_ipv4_utilisation", "n4")
    text = render.text(report)
    assert "neighbour_ipv4_utilisation: n4 = 0.8789" in text
    assert f"G {odd['g']:.2f} > {odd['critical']:.2f}" in text
    coloured = render.text(report, colour=True)
    assert "\033[33mWARNING\033[0m" in coloured and "\033[" not in text
