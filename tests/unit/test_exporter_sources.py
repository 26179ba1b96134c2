"""Conntrack, overlay and cluster families from those sources' recorded fixtures.

Each expectation comes from a capture made at the same moment by another tool
(``conntrack -S``/``-C``, ``bridge -j fdb show``), not from netagent's own parsers.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from prometheus_client import generate_latest

from netagent.config import Config
from netagent.exporter.server import make_registry
from netagent.model import CONNTRACK_EVENTS, ClusterInfo, SourceRun
from netagent.sources.conntrack import ConntrackSource
from netagent.state import AgentState, SourceState
from tests.unit.test_exporter import parse, value
from tests.unit.test_overlay_check import recorded


def state_of(**observations: object) -> AgentState:
    return AgentState(sources={
        name: SourceState(name, SourceRun(name, ok=True, duration_seconds=0.001), obs)
        for name, obs in observations.items()})


def scrape(state: AgentState, config: Config | None = None
           ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples, _ = parse(generate_latest(make_registry(lambda: state, config=config)))
    return samples


def conntrack_S(path: Path) -> Counter[str]:
    """``conntrack -S``: key=value per CPU row, summed."""
    total: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        for field in line.split()[1:]:
            key, _, count = field.partition("=")
            total[key] += int(count)
    return total


def test_conntrack_series_match_conntrack_S_and_C(fixtures: Path) -> None:
    d = fixtures / "conntrack" / "full"
    obs = ConntrackSource(proc_root=str(d / "proc"), stats_from="procfs").collect()
    samples = scrape(state_of(conntrack=obs))
    assert value(samples, "netagent_conntrack_entries") == int(
        (d / "conntrack-C.txt").read_text())
    netfilter = d / "proc" / "sys" / "net" / "netfilter"
    assert value(samples, "netagent_conntrack_max") == int(
        (netfilter / "nf_conntrack_max").read_text())
    assert value(samples, "netagent_conntrack_buckets") == int(
        (netfilter / "nf_conntrack_buckets").read_text())
    oracle = conntrack_S(d / "conntrack-S.txt")
    assert oracle["drop"] == 25  # the capture was made while the table was full
    for event in CONNTRACK_EVENTS:
        assert value(samples, "netagent_conntrack_events_total", event=event) == oracle[event]
    assert value(samples, "netagent_source_up", source="conntrack") == 1


def test_overlay_series_agree_with_bridge_fdb_and_the_check(fixtures: Path) -> None:
    snap = recorded(fixtures)
    fdb = Counter(e["ifname"] for e in
                  json.loads((fixtures / "overlay" / "bridge-fdb.json").read_text()))
    # by count: the configured cluster size, as `netagent check --nodes 6`
    samples = scrape(state_of(overlay=snap), Config(nodes=6))
    for device in ("flannel.1", "vxlan.calico", "flannel-v6.1"):
        assert value(samples, "netagent_overlay_fdb_entries", device=device) == fdb[device]
    assert value(samples, "netagent_overlay_peers_expected", device="flannel.1") == 5
    assert value(samples, "netagent_overlay_peers_missing", device="flannel.1") == 2
    assert value(samples, "netagent_overlay_peers_missing", device="vxlan.calico") == 3
    # Cilium keeps tunnels in BPF maps: no FDB peers to expect, so no series
    assert ("netagent_overlay_peers_expected", (("device", "cilium_vxlan"),)) not in samples

    # the cluster source's reading wins over the configuration, and is exported itself
    samples = scrape(state_of(overlay=snap, cluster=ClusterInfo(4, "Kubernetes API test")),
                     Config(nodes=6))
    assert value(samples, "netagent_cluster_nodes") == 4
    assert value(samples, "netagent_overlay_peers_expected", device="flannel.1") == 3


def test_overlay_without_any_cluster_size_exports_no_expectation(fixtures: Path) -> None:
    samples = scrape(state_of(overlay=recorded(fixtures)))
    assert value(samples, "netagent_overlay_fdb_entries", device="flannel.1") == 4
    assert not [k for k in samples if k[0] == "netagent_overlay_peers_expected"]


def test_every_source_together_is_in_the_contract_and_passes_promtool(fixtures: Path) -> None:
    import shutil
    import subprocess

    from tests.daemonset.conftest import CONTRACT
    from tests.unit.exporter_records import snapshot

    state = state_of(
        neighbours=snapshot(),
        conntrack=ConntrackSource(proc_root=str(fixtures / "conntrack" / "current" / "proc"),
                                  stats_from="procfs").collect(),
        overlay=recorded(fixtures),
        cluster=ClusterInfo(6, "Kubernetes API test"))
    text = generate_latest(make_registry(lambda: state))
    samples, _ = parse(text)
    ours = {k for k in samples if k[0].startswith("netagent_")}
    assert {k[0] for k in ours} >= {"netagent_conntrack_entries", "netagent_cluster_nodes",
                                    "netagent_overlay_peers_missing",
                                    "netagent_neighbour_gc_entries"}
    for name, labels in ours:
        assert name in CONTRACT.series_names(), name
        assert {k for k, _ in labels} == CONTRACT.labels_of(name) - CONTRACT.target_labels
        if name == "netagent_conntrack_events_total":
            assert dict(labels)["event"] in CONTRACT.conntrack_events
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian package 'prometheus'"
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          timeout=30)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc
