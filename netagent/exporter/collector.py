"""The client_python ``Collector``: fresh families from the agent's latest state per scrape.

Per-source families come from the module registered for the source in ``SOURCE_FAMILIES``;
sources without a module still get ``netagent_source_up`` and
``netagent_collect_duration_seconds``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netagent import __version__
from netagent.checks.overlay import ClusterView
from netagent.config import Config
from netagent.exporter import cluster, conntrack, dns, neighbours, overlay
from netagent.exporter.state import AgentState
from netagent.model import (
    ClusterInfo,
    ConntrackObservation,
    DnsObservation,
    NeighbourSnapshot,
    Observations,
    OverlaySnapshot,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Scrape:
    """What a per-source module may read besides its own observation: the whole state."""

    state: AgentState
    config: Config

    def totals(self, source: str) -> Any:
        """The running totals the agent keeps for ``source`` (see ``SOURCE_TOTALS``)."""
        state = self.state.sources.get(source)
        return state.totals if state is not None else None

    def observations(self) -> Observations:
        """The latest successful observation of every source, as the checks saw them."""
        return Observations(
            current={n: s.observation for n, s in self.state.sources.items() if s.up},
            errors={n: s.run.error or "failed" for n, s in self.state.sources.items()
                    if not s.up})


FamiliesOf = Callable[[Any, Scrape], Iterable[Metric]]


def _expect(obs: Any, kind: type[T]) -> T:
    if not isinstance(obs, kind):
        raise TypeError(f"expected a {kind.__name__}, got {type(obs).__name__}")
    return obs


# source name -> the function turning that source's observation into metric families
SOURCE_FAMILIES: Mapping[str, FamiliesOf] = {
    "neighbours": lambda obs, _: neighbours.families(_expect(obs, NeighbourSnapshot)),
    "conntrack": lambda obs, _: conntrack.families(_expect(obs, ConntrackObservation)),
    "overlay": lambda obs, scrape: overlay.families(
        _expect(obs, OverlaySnapshot),
        cluster=ClusterView.of(scrape.observations(), scrape.config)),
    "cluster": lambda obs, _: cluster.families(_expect(obs, ClusterInfo)),
    # counters and a histogram over every round: rendered from the agent's running totals
    "dns": lambda _, scrape: dns.families(_expect(scrape.totals("dns"), dns.DnsTotals)),
}

Fold = Callable[[Any, Any], Any]

# source name -> how the agent folds each new observation into that source's running
# totals (for series that count over every collection, not just the latest one)
SOURCE_TOTALS: Mapping[str, Fold] = {
    "dns": lambda totals, obs: dns.fold(totals, _expect(obs, DnsObservation)),
}


class NetagentCollector(Collector):
    """Reads ``latest()`` once per scrape; never touches the system, never raises."""

    def __init__(self, latest: Callable[[], AgentState], *, config: Config | None = None,
                 source_families: Mapping[str, FamiliesOf] = SOURCE_FAMILIES) -> None:
        self._latest = latest
        self._config = config or Config()
        self._source_families = source_families
        self._reported: set[tuple[str, str]] = set()  # export failures already logged

    def describe(self) -> Iterable[Metric]:
        # Registration must not trigger a collection (client_python calls collect() to
        # describe a collector without describe()).
        return []

    def collect(self) -> Iterator[Metric]:
        state = self._latest()
        scrape = Scrape(state, self._config)
        up = GaugeMetricFamily("netagent_source_up",
                               "1 when the latest collection of the source succeeded.",
                               labels=["source"])
        duration = GaugeMetricFamily("netagent_collect_duration_seconds",
                                     "Wall time of the latest collection of the source.",
                                     labels=["source"])
        out: list[Metric] = []
        for name, source in sorted(state.sources.items()):
            is_up = source.up
            if is_up and name in self._source_families:
                try:
                    # Built completely before anything is yielded: a module that fails
                    # half-way leaves no half-exported source behind.
                    out.extend(self._source_families[name](source.observation, scrape))
                except Exception as err:  # a bug in one module must not fail the scrape
                    # logged once per source and error, not at every scrape
                    key = (name, f"{type(err).__name__}: {err}")
                    if key not in self._reported:
                        self._reported.add(key)
                        log.exception("cannot export the %s observation", name)
                    is_up = False
            up.add_metric([name], 1 if is_up else 0)
            duration.add_metric([name], source.run.duration_seconds)
        yield from out
        status = GaugeMetricFamily(
            "netagent_check_status",
            "Check status: 0 ok, 1 warning, 2 critical, 3 unknown (netagent check's exit codes).",
            labels=["check"])
        for check in sorted(state.checks, key=lambda c: c.id):
            status.add_metric([check.id], int(check.status))
        info = GaugeMetricFamily("netagent_build_info", "netagent version; always 1.",
                                 labels=["version"])
        info.add_metric([__version__], 1)
        yield from (status, up, duration, info)
