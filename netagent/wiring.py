"""Builds the sources from the configuration: the one place that knows every source."""

from __future__ import annotations

from collections.abc import Sequence

from netagent.config import Config
from netagent.sources import Source
from netagent.sources.cluster import ClusterSource
from netagent.sources.conntrack import ConntrackSource
from netagent.sources.dns import DnsSource
from netagent.sources.neighbours import NeighbourSource
from netagent.sources.overlay import OverlaySource

SOURCE_NAMES = ("neighbours", "conntrack", "overlay", "cluster", "dns")


def build_sources(config: Config, *, only: Sequence[str] = ()) -> dict[str, Source]:
    wanted = [n for n in SOURCE_NAMES if not only or n in only]
    sources: dict[str, Source] = {}
    for name in wanted:
        if name == "neighbours":
            sources[name] = NeighbourSource()
        elif name == "overlay":
            sources[name] = OverlaySource()
        elif name == "cluster":
            # the node list (with annotations) only when the overlay checks will use it
            sources[name] = ClusterSource(config.cluster, nodes=config.nodes,
                                          peers="overlay" in wanted)
        elif name == "conntrack":
            sources[name] = ConntrackSource()
        elif name == "dns":
            sources[name] = DnsSource(config.dns)
    return sources
