"""The catalog is the one table of sources; everything else reads it."""

from __future__ import annotations

import dataclasses

import pytest

from netagent import catalog, wiring
from netagent.config import AgentIntervals, Config, load
from netagent.errors import ConfigError
from netagent.exporter.collector import catalog_families


@pytest.mark.parametrize("spec", catalog.SOURCES, ids=lambda s: s.name)
def test_every_reference_resolves_to_a_function(spec: catalog.SourceSpec) -> None:
    for ref in (spec.build, spec.checks, spec.families, spec.totals):
        if ref is not None:
            assert callable(catalog.resolve(ref)), ref
    assert spec.reads <= set(catalog.SOURCE_NAMES)
    low, high = spec.interval_range
    assert low <= spec.interval <= high


def test_config_wiring_and_exporter_follow_the_catalog(tmp_path: object) -> None:
    names = catalog.SOURCE_NAMES
    assert [f.name for f in dataclasses.fields(AgentIntervals)] == list(names)
    assert {n: getattr(Config().agent.intervals, n) for n in names} == {
        s.name: s.interval for s in catalog.SOURCES}
    sources = wiring.build_sources(Config())
    assert list(sources) == list(names)
    assert set(catalog_families()) == {s.name for s in catalog.SOURCES if s.families}
    assert wiring.build_sources(Config(), only=["dns"]).keys() == {"dns"}


def test_interval_ranges_come_from_the_catalog(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "netagent.yaml"
    spec = catalog.BY_NAME["dns"]
    path.write_text(f"agent:\n  intervals:\n    dns: {spec.interval_range[1] * 2}\n")
    with pytest.raises(ConfigError, match=r"'agent\.intervals\.dns' must be between"):
        load(path)
    path.write_text("agent:\n  intervals:\n    dns: 7\n")
    assert load(path).agent.intervals.dns == 7.0
