"""The cluster's size from a ``ClusterInfo`` (the ``cluster`` source).

A person sees the same with ``kubectl get nodes --no-headers | wc -l``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from netagent.exporter.scrape import Scrape, expect
from netagent.model import ClusterInfo


def export(obs: object, scrape: Scrape) -> Iterator[Metric]:
    return families(expect(obs, ClusterInfo))


def families(info: ClusterInfo) -> Iterator[Metric]:
    nodes = GaugeMetricFamily(
        "netagent_cluster_nodes",
        "Nodes in the cluster, from the Kubernetes API (or the configuration without it).")
    nodes.add_metric([], info.nodes)
    yield nodes
