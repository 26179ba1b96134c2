"""Shared fixtures for the deployment artefacts in daemonset/.

The metric contract below is DESIGN §3 ("Metrics"): the alert rules, their unit
tests and the dashboard may only use these names and labels, so that what the
exporter serves and what the alerts ask for cannot drift apart unnoticed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAEMONSET = REPO / "daemonset"


@dataclass(frozen=True)
class MetricContract:
    """Metric names with their labels, as netagent exports them."""

    labels: dict[str, frozenset[str]]
    histograms: frozenset[str]
    # Added by Prometheus to every scraped series, not by the exporter.
    target_labels: frozenset[str]
    # Values of netagent_conntrack_events_total{event}.
    conntrack_events: frozenset[str]

    def series_names(self) -> frozenset[str]:
        """Every name a query may use, histogram series included."""
        names = set(self.labels)
        for histogram in self.histograms:
            names.update(f"{histogram}_{suffix}" for suffix in ("bucket", "count", "sum"))
        return frozenset(names)

    def labels_of(self, series: str) -> frozenset[str]:
        """The labels a series may carry, target labels included."""
        for histogram in self.histograms:
            if series == f"{histogram}_bucket":
                return self.labels[histogram] | {"le"} | self.target_labels
            if series in (f"{histogram}_count", f"{histogram}_sum"):
                return self.labels[histogram] | self.target_labels
        return self.labels[series] | self.target_labels

    def all_labels(self) -> frozenset[str]:
        return frozenset().union(*self.labels.values()) | self.target_labels | {"le"}


CONTRACT = MetricContract(
    labels={
        "netagent_neighbour_entries": frozenset({"family", "state"}),
        "netagent_neighbour_gc_entries": frozenset({"family"}),
        "netagent_neighbour_gc_thresh": frozenset({"family", "level"}),
        "netagent_neighbour_table_fulls_total": frozenset({"family"}),
        "netagent_neighbour_forced_gc_runs_total": frozenset({"family"}),
        "netagent_conntrack_entries": frozenset(),
        "netagent_conntrack_max": frozenset(),
        "netagent_conntrack_buckets": frozenset(),
        "netagent_conntrack_events_total": frozenset({"event"}),
        "netagent_overlay_fdb_entries": frozenset({"device"}),
        "netagent_overlay_peers_expected": frozenset({"device"}),
        "netagent_overlay_peers_missing": frozenset({"device"}),
        "netagent_cluster_nodes": frozenset(),
        "netagent_dns_probe_duration_seconds": frozenset({"resolver", "protocol", "mode"}),
        "netagent_dns_probe_failures_total": frozenset({"resolver", "protocol", "reason"}),
        "netagent_check_status": frozenset({"check"}),
        "netagent_source_up": frozenset({"source"}),
        "netagent_collect_duration_seconds": frozenset({"source"}),
        "netagent_build_info": frozenset({"version"}),
        "netagent_remediation_mode": frozenset(),
        "netagent_remediation_actions_total": frozenset({"key", "result"}),
        "netagent_remediation_managed": frozenset({"key"}),
        "netagent_remediation_ceiling_reached": frozenset({"key"}),
        "netagent_sysctl_value": frozenset({"key"}),
        "netagent_neighbour_exhaustion_seconds": frozenset({"family"}),
        "netagent_conntrack_exhaustion_seconds": frozenset(),
        "netagent_neighbour_nodes_until_full": frozenset({"family"}),
        "netagent_kubernetes_requests_total": frozenset({"operation", "code"}),
        "netagent_kubernetes_events_dropped_total": frozenset({"reason"}),
        "netagent_kubernetes_report_up": frozenset(),
    },
    histograms=frozenset({"netagent_dns_probe_duration_seconds"}),
    target_labels=frozenset({"instance", "job"}),
    conntrack_events=frozenset(
        {"insert_failed", "drop", "early_drop", "invalid", "clash_resolve", "search_restart"}
    ),
)


@pytest.fixture(scope="session")
def contract() -> MetricContract:
    return CONTRACT


class Promtool:
    """Runs promtool from the repository root.

    A missing promtool fails the calling test (it is not skipped): without it the
    alert rules are not checked at all.
    """

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        path = shutil.which("promtool")
        if path is None:
            pytest.fail(
                "promtool not found on PATH: the alert rules cannot be checked. Install it "
                "(Debian/Ubuntu: apt-get install prometheus; or the promtool binary from "
                "https://github.com/prometheus/prometheus/releases) and re-run.",
                pytrace=False,
            )
        return subprocess.run([path, *args], cwd=REPO, capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def promtool() -> Promtool:
    return Promtool()
