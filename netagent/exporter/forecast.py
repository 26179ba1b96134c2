"""The forecasts' families (``netagent.forecast``), from the agent's state.

Each is present only while it has a value: a time to full only while a forecast says the
table fills (no +Inf, so ``netagent_neighbour_exhaustion_seconds < 3600`` is an alert's whole
expression), and the nodes until full only while the cluster's node count is known.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric

from netagent.model import Forecast


def families(forecasts: Mapping[str, Forecast]) -> Iterator[Metric]:
    neighbour = GaugeMetricFamily(
        "netagent_neighbour_exhaustion_seconds",
        "Forecast seconds until the neighbour table reaches gc_thresh3 (the long-term "
        "growth while the recent trend confirms it, or the cluster's node growth, whichever "
        "is sooner); absent when it is not forecast to fill.", labels=["family"])
    conntrack = GaugeMetricFamily(
        "netagent_conntrack_exhaustion_seconds",
        "Forecast seconds until the conntrack table reaches nf_conntrack_max; absent when "
        "it is not forecast to fill.")
    nodes = GaugeMetricFamily(
        "netagent_neighbour_nodes_until_full",
        "Nodes the cluster can still grow by before this node's neighbour table reaches "
        "gc_thresh3, at today's entries per node.", labels=["family"])
    for key, f in sorted(forecasts.items()):
        if key == "conntrack":
            if f.seconds_to_full is not None:
                conntrack.add_metric([], f.seconds_to_full)
            continue
        family = key.removeprefix("neighbour.")
        if f.seconds_to_full is not None:
            neighbour.add_metric([family], f.seconds_to_full)
        if f.nodes_until_full is not None:
            nodes.add_metric([family], f.nodes_until_full)
    # A family without samples is left out altogether (not even its HELP line).
    yield from (family for family in (neighbour, conntrack, nodes) if family.samples)
