"""Golden reports: the text (plain and -v) and the JSON of recorded scenarios, byte for byte.

The scenarios are built from the recorded fixtures and the unit tests' own observation
helpers, so each check that proposes a fix is here with its fix. A change to how checks
compute or render fixes must leave these files unchanged (the JSON apart from each check's
``changes``, the typed records the text is rendered from). After an intended change of
output: ``NETAGENT_GOLDEN_UPDATE=1 scripts/test tests/unit/test_golden_reports.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netagent.checks import conntrack, dns
from netagent.config import ConntrackThresholds, DnsThresholds, NeighbourThresholds
from netagent.model import (
    CheckResult,
    NeighbourSnapshot,
    Observations,
    Report,
    SourceRun,
)
from netagent.report import json as json_report
from netagent.report import text as text_report
from tests.unit import test_conntrack_checks as ct
from tests.unit import test_dns_checks as d
from tests.unit import test_neighbour_checks as nb
from tests.unit import test_overlay_check as ov

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _neighbours() -> list[CheckResult]:
    t = NeighbourThresholds()
    return [
        nb.check_family(nb.observation(100), None, t),
        nb.check_family(nb.observation(600), None, t, nodes=200),
        nb.check_family(nb.observation(900, permanent=40, kernel=nb.OLD), None, t),
        nb.check_family(nb.observation(1024, table_fulls=9, at=12.0),
                        nb.observation(1024, table_fulls=2), t, nodes=600),
        nb.check_family(nb.observation(450), None, t, nodes=300),
        # growing by 2 entries/s between the two samples of `netagent check`
        *nb.evaluate(Observations(
            current={"neighbours": NeighbourSnapshot({"ipv4": nb.observation(400, at=12.0)})},
            baseline={"neighbours": NeighbourSnapshot({"ipv4": nb.observation(396)})}), t),
    ]


def _conntrack() -> list[CheckResult]:
    t = ConntrackThresholds()
    out = []
    for moment in ("current", "full"):
        obs = ct._read(FIXTURES, moment)
        out.append(conntrack.check_table(obs, t))
    small = dataclasses.replace(ct._read(FIXTURES, "current"), count=900, max=1000, buckets=64)
    out.append(conntrack.check_table(small, t))
    before, after = ct._read(FIXTURES, "before", at=0.0), ct._read(FIXTURES, "current",
                                                                 at=2.0)
    out.extend(conntrack.evaluate(Observations(current={"conntrack": after},
                                               baseline={"conntrack": before}), t))
    return out


def _dns() -> list[CheckResult]:
    t = DnsThresholds()
    late = [d.probe(5.01 + 0.01 * i, timeouts=1) for i in range(6)] + [
        d.probe(0.002) for _ in range(6)]
    scenarios = [
        d.observe(d.resolver([d.probe(0.002) for _ in range(12)])),
        d.observe(d.resolver(late)),
        d.observe(d.resolver([d.probe(10.0, answered=False, timeouts=2) for _ in range(4)])),
        d.observe(d.resolver([d.probe(0.002, error="connection refused", answered=False)
                              for _ in range(4)])),
        d.observe(d.resolver([d.probe(0.002) for _ in range(6)]),
                  nodelocal=d.nodelocal(FIXTURES, "nft-iptables-notrack-missing.json",
                                        kubelet=d.KUBELET_NODELOCAL)),
        d.observe(d.resolver([d.probe(0.002) for _ in range(6)]),
                  nodelocal=d.nodelocal(FIXTURES, "nft-notrack.json", answering=False,
                                        kubelet=d.KUBELET_NODELOCAL)),
    ]
    return [r for obs in scenarios for r in dns.evaluate(obs, t)]


def _overlay() -> list[CheckResult]:
    snapshot = ov.recorded(FIXTURES)
    by_count = ov.run(snapshot, nodes=6)
    complete = ov.run(snapshot, nodes=4)
    return [*by_count.values(), *complete.values()]


SCENARIOS: dict[str, Callable[[], list[CheckResult]]] = {
    "neighbours": _neighbours, "conntrack": _conntrack, "dns": _dns, "overlay": _overlay,
}


def report(name: str) -> Report:
    checks = tuple(SCENARIOS[name]())
    return Report(node="golden", kernel="6.18.44", checks=checks,
                  sources=(SourceRun(name=name, ok=True, duration_seconds=0.001),))


def without_changes(text: str) -> Any:
    doc = json.loads(text)
    for check in doc["checks"]:
        check.pop("changes", None)
    return doc


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_output(name: str) -> None:
    rendered = {
        "txt": text_report.render(report(name)),
        "verbose.txt": text_report.render(report(name), verbose=True),
        "json": json_report.render(report(name)),
    }
    GOLDEN.mkdir(exist_ok=True)
    for suffix, text in rendered.items():
        path = GOLDEN / f"{name}.{suffix}"
        if os.environ.get("NETAGENT_GOLDEN_UPDATE") == "1":
            path.write_text(text + "\n")
            continue
        assert path.exists(), f"{path} is missing: run with NETAGENT_GOLDEN_UPDATE=1"
        expected = path.read_text()[:-1]
        if suffix == "json":
            assert without_changes(text) == without_changes(expected)
            assert json.dumps(without_changes(text), indent=1) == json.dumps(
                without_changes(expected), indent=1)
        else:
            assert text == expected, f"{path} differs"


def test_the_scenarios_propose_fixes() -> None:
    """The golden files are worth their bytes only if fixes are in them."""
    with_fix = [c.id for name in SCENARIOS for c in SCENARIOS[name]() if c.fix]
    assert len(with_fix) >= 8, with_fix
