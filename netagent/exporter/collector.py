"""The client_python ``Collector``: fresh families from the agent's latest state per scrape.

Per-source families come from the exporter the catalog names for the source
(``netagent.catalog``); sources without one still get ``netagent_source_up`` and
``netagent_collect_duration_seconds``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netagent import __version__, catalog
from netagent.config import Config
from netagent.exporter import forecast
from netagent.exporter.scrape import Scrape
from netagent.state import AgentState

log = logging.getLogger(__name__)

FamiliesOf = Callable[[Any, Scrape], Iterable[Metric]]


def catalog_families() -> dict[str, FamiliesOf]:
    """Each source's exporter (``families`` in ``netagent.catalog``), imported now."""
    return {spec.name: catalog.resolve(spec.families) for spec in catalog.SOURCES
            if spec.families}


S = TypeVar("S")


class StatusCollector(Collector, Generic[S]):
    """The families a consumer exports from its latest status (remediation, the Kubernetes
    reporter); nothing while it has none."""

    def __init__(self, families: Callable[[S], Iterable[Metric]],
                 latest: Callable[[], S | None]) -> None:
        self._families, self._latest = families, latest

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        status = self._latest()
        return self._families(status) if status is not None else []


class NetagentCollector(Collector):
    """Reads ``latest()`` once per scrape; never touches the system, never raises."""

    def __init__(self, latest: Callable[[], AgentState], *, config: Config | None = None,
                 source_families: Mapping[str, FamiliesOf] | None = None) -> None:
        self._latest = latest
        self._config = config or Config()
        self._source_families = (catalog_families() if source_families is None
                                 else source_families)
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
        yield from forecast.families(state.forecasts)
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
