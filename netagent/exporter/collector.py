"""The client_python ``Collector``: fresh families from the agent's latest state per scrape.

Per-source families come from the module registered for the source in ``SOURCE_FAMILIES``;
sources without a module still get ``netagent_source_up`` and
``netagent_collect_duration_seconds``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netagent import __version__
from netagent.exporter import neighbours
from netagent.exporter.state import AgentState
from netagent.model import NeighbourSnapshot

log = logging.getLogger(__name__)

FamiliesOf = Callable[[Any], Iterable[Metric]]


def _neighbour_families(obs: Any) -> Iterable[Metric]:
    if not isinstance(obs, NeighbourSnapshot):
        raise TypeError(f"neighbours: expected a NeighbourSnapshot, got {type(obs).__name__}")
    return neighbours.families(obs)


# source name -> the function turning that source's observation into metric families
SOURCE_FAMILIES: Mapping[str, FamiliesOf] = {
    "neighbours": _neighbour_families,
}


class NetagentCollector(Collector):
    """Reads ``latest()`` once per scrape; never touches the system, never raises."""

    def __init__(self, latest: Callable[[], AgentState], *,
                 source_families: Mapping[str, FamiliesOf] = SOURCE_FAMILIES) -> None:
        self._latest = latest
        self._source_families = source_families

    def describe(self) -> Iterable[Metric]:
        # Registration must not trigger a collection (client_python calls collect() to
        # describe a collector without describe()).
        return []

    def collect(self) -> Iterator[Metric]:
        state = self._latest()
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
                    out.extend(self._source_families[name](source.observation))
                except Exception:  # a bug in one module must not fail the scrape
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
