"""The sources netagent reads, each declared once.

One entry per source: its name, how it is built from the configuration, its default
interval in ``netagent run`` and the range allowed for it, the checks it feeds (and the
other sources those checks read), the Prometheus families it exports and the running totals
the agent keeps for it. ``wiring`` builds the sources from it, ``checks.registry`` judges
with it, ``exporter.collector`` exports with it, ``config`` takes its interval defaults and
ranges from it and the agent its running totals.

Code is named as ``"module:function"`` and imported only when used, so that
``netagent check --only dns`` imports the DNS source, checks and nothing else, and this
module (imported by ``config``) depends on nothing. Adding a source is one entry here plus
its modules: ``sources/<name>.py`` (``from_config``), ``checks/<name>.py`` and, if it exports
anything, ``exporter/<name>.py``.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SourceSpec:
    name: str
    build: str  # (config, wanted: Sequence[str]) -> Source
    interval: float  # default seconds between collections by `netagent run`
    checks: str  # (observations, config) -> list[CheckResult]
    families: str | None = None  # (observation, scrape) -> Iterable[Metric]
    reads: frozenset[str] = frozenset()  # other sources whose observations its checks read
    totals: str | None = None  # (totals | None, observation) -> totals, over every collection
    interval_range: tuple[float, float] = (0.1, 86400.0)


SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "neighbours", build="netagent.sources.neighbours:from_config", interval=15.0,
        checks="netagent.checks.neighbours:judge",
        families="netagent.exporter.neighbours:export",
        reads=frozenset({"cluster"})),  # capacity from the node count
    SourceSpec(
        "conntrack", build="netagent.sources.conntrack:from_config", interval=15.0,
        checks="netagent.checks.conntrack:judge",
        families="netagent.exporter.conntrack:export"),
    SourceSpec(
        "overlay", build="netagent.sources.overlay:from_config", interval=15.0,
        checks="netagent.checks.overlay:judge",
        families="netagent.exporter.overlay:export",
        reads=frozenset({"cluster"})),  # the peers expected
    # The cluster source asks the API at most once per cluster.poll_seconds (300 s, with
    # jitter) and answers from its cache in between, so its interval only bounds how stale
    # that answer can be; a second long interval would compound with the source's own.
    SourceSpec(
        "cluster", build="netagent.sources.cluster:from_config", interval=30.0,
        checks="netagent.checks.overlay:judge_cluster",
        families="netagent.exporter.cluster:export",
        reads=frozenset({"overlay"})),  # a cluster check of its own only without overlay
    SourceSpec(
        "dns", build="netagent.sources.dns:from_config", interval=30.0,
        checks="netagent.checks.dns:judge",
        families="netagent.exporter.dns:export",
        reads=frozenset({"conntrack"}),  # insert_failed growth in the same round
        totals="netagent.exporter.dns:fold_observation"),  # probe counters and histogram
)

BY_NAME = {spec.name: spec for spec in SOURCES}
SOURCE_NAMES = tuple(BY_NAME)


@functools.cache
def resolve(ref: str) -> Any:
    """The function named ``"module:function"``, imported on first use."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def inputs(source: str) -> frozenset[str]:
    """The sources whose observations the checks of ``source`` read."""
    return BY_NAME[source].reads | {source}
