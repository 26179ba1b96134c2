"""VXLAN overlay families from an ``OverlaySnapshot`` (the ``overlay`` source).

A person sees the same with ``bridge fdb show dev flannel.1`` and ``kubectl get nodes``.
Expected and missing peers come from the overlay check's own analysis
(``netagent.checks.overlay.analyse``), so the metrics and ``overlay.<device>`` agree.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from netagent.checks.overlay import ClusterView, analyse
from netagent.exporter.scrape import Scrape, expect
from netagent.model import OverlaySnapshot


def export(obs: object, scrape: Scrape) -> Iterator[Metric]:
    return families(expect(obs, OverlaySnapshot),
                    cluster=ClusterView.of(scrape.observations(), scrape.config))


def families(snapshot: OverlaySnapshot, *, cluster: ClusterView) -> Iterator[Metric]:
    fdb = GaugeMetricFamily("netagent_overlay_fdb_entries",
                            "Forwarding entries of the VXLAN device (bridge fdb show dev ...).",
                            labels=["device"])
    expected = GaugeMetricFamily(
        "netagent_overlay_peers_expected",
        "Remote nodes the device should reach, from node annotations or the node count.",
        labels=["device"])
    missing = GaugeMetricFamily(
        "netagent_overlay_peers_missing",
        "Expected remote nodes without a complete FDB + neighbour + route path.",
        labels=["device"])
    for dev in sorted(snapshot.devices, key=lambda d: d.name):
        if dev.fdb_entries is not None:
            fdb.add_metric([dev.name], dev.fdb_entries)
        if dev.cni == "cilium" or dev.fdb is None or dev.neighbours is None \
                or dev.routes is None:
            continue  # no FDB peers to expect (Cilium: BPF maps), or tables unreadable
        a = analyse(dev, cluster)
        if a.peers_expected is not None:
            expected.add_metric([dev.name], a.peers_expected)
        if a.peers_missing is not None:
            missing.add_metric([dev.name], a.peers_missing)
    yield from (fdb, expected, missing)
