"""Builds the sources from the configuration: the one place that knows every source."""

from __future__ import annotations

from collections.abc import Sequence

from netagent.config import Config
from netagent.sources import Source
from netagent.sources.dns import DnsSource
from netagent.sources.neighbours import NeighbourSource

SOURCE_NAMES = ("neighbours", "conntrack", "overlay", "cluster", "dns")


def build_sources(config: Config, *, only: Sequence[str] = ()) -> dict[str, Source]:
    wanted = [n for n in SOURCE_NAMES if not only or n in only]
    sources: dict[str, Source] = {}
    for name in wanted:
        if name == "neighbours":
            sources[name] = NeighbourSource()
        elif name == "dns":
            sources[name] = DnsSource(config.dns)
    return sources
