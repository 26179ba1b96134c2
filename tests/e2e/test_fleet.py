"""`netagent fleet` against a real Prometheus holding a synthetic fleet's history.

Each fleet is written as OpenMetrics text with netagent's metric names, backfilled with
``promtool tsdb create-blocks-from openmetrics`` and served by Debian's Prometheus on
loopback; the command runs as a real process and its JSON is read back.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from labkit.fleet import Fleet, backfill, normal_scores, prometheus

from tests.e2e.daemon import AGENT_ENV, ROOT


def fleet_command(url: str, *args: str, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "netagent", "fleet", "--prometheus", url,
                           "--json", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=str(ROOT), env={**AGENT_ENV, "PATH": "/usr/bin:/bin"})
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def fleet_text(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netagent", "fleet", "--prometheus", url,
                           *args], capture_output=True, text=True, timeout=60, cwd=str(ROOT),
                          env={**AGENT_ENV, "PATH": "/usr/bin:/bin"})


def noisy_fleet(count: int, *, seed: int, end: float, ipv4_factor: dict[int, float] | None = None,
                insert_failed: dict[int, float] | None = None) -> Fleet:
    """``count`` nodes alike but for normal noise (normal scores, see labkit.fleet),
    constant over the two hours; ``ipv4_factor`` and ``insert_failed`` make odd nodes."""
    rng = random.Random(seed)
    fleet = Fleet(end=end)
    v4s, v6s = normal_scores(count, 300, 15, rng), normal_scores(count, 50, 4, rng)
    cts, dnss = normal_scores(count, 20000, 900, rng), normal_scores(count, 0.002, 0.0002, rng)
    for i in range(count):
        v4 = v4s[i] * (ipv4_factor or {}).get(i, 1.0)
        failing = (insert_failed or {}).get(i, 0.0)
        fleet.node(f"node-{i:02d}", ipv4=const(v4), ipv6=const(v6s[i]), gc_thresh3=4096,
                   conntrack=const(cts[i]), dns_seconds=const(dnss[i]),
                   cluster_nodes=const(count), insert_failed_per_s=failing,
                   statuses={"neighbour.ipv4": 0, "conntrack.table": 0,
                             "conntrack.insert_failed": 1 if failing else 0})
    return fleet


def const(value: float) -> Callable[[float], float]:
    return lambda t: value


def test_a_fleet_of_40_with_two_odd_nodes(tmp_path: Path) -> None:
    """node-07 holds three times the others' IPv4 neighbours, node-23's conntrack fails
    inserts: each is flagged under its own metric, and nobody else anywhere."""
    fleet = noisy_fleet(40, seed=1, end=time.time() - 30, ipv4_factor={7: 3.0},
                        insert_failed={23: 2.0})
    with prometheus(backfill(fleet, tmp_path), tmp_path) as url:
        code, report = fleet_command(url)
        text = fleet_text(url)
    flagged = {(o["metric"], o["node"]) for o in report["outliers"]}
    assert flagged == {("neighbour_ipv4_utilisation", "node-07"),
                       ("conntrack_insert_failed_rate", "node-23")}, report["outliers"]
    assert code == 1 and report["status"] == "warning"
    assert report["nodes"] == 40 and report["counts"]["warning"] == 1
    assert report["unhealthy"]["warning"] == ["node-23"]
    odd = next(o for o in report["outliers"] if o["node"] == "node-07")
    assert odd["value"] == pytest.approx(odd["mean"] * 3, rel=0.25)
    assert odd["g"] > odd["critical"] > 0 and odd["stddev"] > 0
    failing = next(o for o in report["outliers"] if o["node"] == "node-23")
    assert failing["value"] == pytest.approx(2.0, rel=0.02)  # insert_failed per second
    nearest = [n for n in report["nearest"] if n["table"] == "neighbour_ipv4"]
    assert nearest[0]["node"] == "node-07" and nearest[0]["limit"] == 4096
    assert len(nearest) == 5
    assert text.returncode == 1
    assert "neighbour_ipv4_utilisation: node-07 = " in text.stdout, text.stdout
    assert "conntrack_insert_failed_rate: node-23 = 2" in text.stdout, text.stdout


def test_a_homogeneous_fleet_has_no_outliers(tmp_path: Path) -> None:
    fleet = noisy_fleet(40, seed=11, end=time.time() - 30)
    with prometheus(backfill(fleet, tmp_path), tmp_path) as url:
        code, report = fleet_command(url, "--alpha", "0.05")
    assert report["outliers"] == [], report["outliers"]
    assert (code, report["status"]) == (0, "ok")
    tested = {t["metric"]: t["nodes"] for t in report["tests"]}
    assert tested["neighbour_ipv4_utilisation"] == 40 and tested["dns_p95_seconds"] == 40


def test_five_nodes_are_too_few_for_the_test(tmp_path: Path) -> None:
    fleet = noisy_fleet(5, seed=3, end=time.time() - 30)
    with prometheus(backfill(fleet, tmp_path), tmp_path) as url:
        code, report = fleet_command(url)
        text = fleet_text(url)
    refused = {t["metric"]: t["refused"] for t in report["tests"]}
    assert refused["neighbour_ipv4_utilisation"] == "too few nodes for the test (5 < 7)"
    assert all(refused.values()) and report["outliers"] == []
    assert code == 0 and report["nodes"] == 5
    assert "not tested, too few nodes for the test (5 < 7)" in text.stdout


def test_node_count_growth_gives_the_first_node_and_when(tmp_path: Path) -> None:
    """The cluster grows from 300 to 600 nodes in two hours (+150 nodes/h). Each node's IPv4
    entries grow with it, at 1.5 to 2.45 entries per node; every gc_thresh3 is 8192. node-19
    (2.45 per node) is first: full at 8192 / 2.45 = 3343 nodes, (3343.7 - 600) / 150 h
    = 18.3 h from now."""
    end = time.time() - 30
    fleet = Fleet(end=end)

    def nodes(t: float) -> float:
        return 300 + 300 * fleet.frac(t)

    for i in range(20):
        k = 1.5 + 0.05 * i
        fleet.node(f"node-{i:02d}", ipv4=lambda t, k=k: k * nodes(t), gc_thresh3=8192,
                   cluster_nodes=nodes)
    with prometheus(backfill(fleet, tmp_path), tmp_path) as url:
        code, report = fleet_command(url, "--window", "2h", "--horizon", "24h")
    room = report["headroom"]["neighbour_ipv4"]
    assert room["nodes_now"] == pytest.approx(600, abs=3)
    assert room["growth_per_hour"] == pytest.approx(150, rel=0.02)
    assert room["first_node"] == "node-19" and room["first_limit"] == 8192
    assert room["nodes_at_full"] == pytest.approx(3343, abs=15)
    assert room["seconds_to_full"] == pytest.approx((8192 / 2.45 - 600) / 150 * 3600,
                                                    rel=0.03)
    # 24 h ahead: 2.45 x (600 + 24 x 150) = 10,290 entries by both forecasts, which agree:
    # sized at 70% -> 14,700, rounded up to 15,360, scaled 1:4:8
    assert room["trend_peak"] == pytest.approx(10290, rel=0.03)
    assert room["growth_peak"] == pytest.approx(10290, rel=0.03)
    assert room["ratio"] == 0.7
    assert room["rollout"] == {"net.ipv4.neigh.default.gc_thresh1": 1920,
                               "net.ipv4.neigh.default.gc_thresh2": 7680,
                               "net.ipv4.neigh.default.gc_thresh3": 15360}
    assert code == 0
