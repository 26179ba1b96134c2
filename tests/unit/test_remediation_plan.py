"""The remediation planner over a table of cases: trigger, headroom, ceiling, cooldown,
administrator-owned, excluded, a table refusing entries, x4 steps, pre-5.0 counting,
conntrack and NOTRACK."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from netagent.checks.neighbours import check_family
from netagent.config import Config, NeighbourThresholds, RemediationConfig
from netagent.model import (
    ConntrackObservation,
    DnsObservation,
    Forecast,
    Journal,
    KeyRecord,
    NeighbourSnapshot,
    NodeFacts,
    Observations,
)
from netagent.remediation import plan as planner
from tests.unit import test_conntrack_checks as ct
from tests.unit import test_dns_checks as d
from tests.unit import test_neighbour_checks as nb

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
V4 = "net.ipv4.neigh.default.gc_thresh"
NOW = 1_000_000.0
GIB = 1 << 30


def facts(**values: int | None) -> NodeFacts:
    base: dict[str, int | None] = {f"{V4}1": 128, f"{V4}2": 512, f"{V4}3": 1024,
                                   "net.ipv6.neigh.default.gc_thresh1": 128,
                                   "net.ipv6.neigh.default.gc_thresh2": 512,
                                   "net.ipv6.neigh.default.gc_thresh3": 1024,
                                   "net.netfilter.nf_conntrack_max": 262144,
                                   "nf_conntrack.hashsize": 65536}
    base.update({k.replace("__", "."): v for k, v in values.items()})
    return NodeFacts(values=base, set_in_files={}, mem_total_bytes=24 * GIB,
                     hashsize_writable=True, now=NOW)


def neighbours(count: int, *, fulls: tuple[int, int] | None = None, **kw: Any) -> Observations:
    now = nb.observation(count, table_fulls=fulls[1] if fulls else 0, **kw)
    before = nb.observation(count, table_fulls=fulls[0]) if fulls else None
    return Observations(current={"neighbours": NeighbourSnapshot({"ipv4": now})},
                        baseline={"neighbours": NeighbourSnapshot({"ipv4": before})}
                        if before else {})


def config(**remediation: Any) -> Config:
    return Config(remediation=RemediationConfig(**remediation))


def targets(p: planner.Plan) -> dict[str, int]:
    return {a.key: a.target for a in p.actions}


def test_below_the_trigger_nothing_is_planned() -> None:
    p = planner.plan(neighbours(700), facts(), Journal(), config())  # 68 %
    assert not p.pending and p.refusals == () and p.elsewhere == ()


def test_at_the_trigger_the_thresholds_are_raised_as_the_check_sizes_them() -> None:
    obs = neighbours(720)  # 70 % of 1024
    p = planner.plan(obs, facts(), Journal(), config())
    assert targets(p) == {f"{V4}3": 2048, f"{V4}2": 1024, f"{V4}1": 256}
    assert [a.key for a in p.actions] == [f"{V4}3", f"{V4}2", f"{V4}1"]  # the cap first
    # one sizing rule: what the check recommends for the same table when it is due
    check = check_family(nb.observation(720), None,
                         dataclasses.replace(NeighbourThresholds(), warning_ratio=0.7))
    assert {c.key: c.target for c in check.changes} == targets(p)
    assert "720 of 1024 (70%, trigger 70%)" in p.actions[0].reason


def test_never_lowered() -> None:
    p = planner.plan(neighbours(720), facts(**{f"{V4}1".replace(".", "__"): 4000}),
                     Journal(), config())
    assert f"{V4}1" not in targets(p) and targets(p)[f"{V4}3"] == 2048


def test_a_ceiling_caps_and_then_refuses() -> None:
    capped = planner.plan(neighbours(900), facts(), Journal(),
                          config(ceilings=(f"{V4}3=1500",)))
    assert targets(capped)[f"{V4}3"] == 1500
    at = planner.plan(neighbours(1000), facts(**{f"{V4}3".replace(".", "__"): 1500}),
                      Journal(), config(ceilings=(f"{V4}3=1500",)))
    (refusal,) = [r for r in at.refusals if r.key == f"{V4}3"]
    assert refusal.ceiling and refusal.reason == "cannot raise further: ceiling 1500 reached"
    assert f"{V4}3" not in targets(at)


def test_the_default_ceiling_comes_from_memory() -> None:
    rules = planner._Rules(facts(), Journal(), RemediationConfig())
    # 2 % of 24 GiB at 512 bytes an entry
    assert rules.ceiling(f"{V4}3") == int(0.02 * 24 * GIB) // 512
    assert rules.ceiling("net.netfilter.nf_conntrack_max") == int(0.02 * 24 * GIB) // 320


def test_at_most_four_times_per_step() -> None:
    p = planner.plan(neighbours(4000), facts(), Journal(), config())
    assert targets(p)[f"{V4}3"] == 4096  # 4000 / 50 % = 8192, capped at 4 x 1024
    assert "capped at 4096" in p.actions[0].reason


def test_cooldown_unless_the_kernel_is_refusing() -> None:
    journal = Journal(keys={f"{V4}3": KeyRecord(original=512, written=1024, at=NOW - 10)})
    p = planner.plan(neighbours(900), facts(), journal, config())
    (refusal,) = [r for r in p.refusals if r.key == f"{V4}3"]
    assert refusal.reason.startswith("cooldown: raised 10 s ago")
    refusing = planner.plan(neighbours(900, fulls=(3, 9)), facts(), journal, config())
    assert refusing.demands[0].refusing and f"{V4}3" in targets(refusing)


@pytest.mark.parametrize(("change", "why"), [
    ({"set_in_files": {f"{V4}3": "/etc/sysctl.d/50-admin.conf"}},
     "set in /etc/sysctl.d/50-admin.conf"),
    ({"values_written": 2048}, "changed to 1024 after netagent wrote 2048"),
    ({"exclude": True}, "excluded by remediation.exclude"),
])
def test_a_key_someone_else_manages_is_left_alone(change: dict[str, Any], why: str) -> None:
    f, journal, cfg = facts(), Journal(), config()
    if "set_in_files" in change:
        f = dataclasses.replace(f, set_in_files=change["set_in_files"])
    if "values_written" in change:
        journal = Journal(keys={f"{V4}3": KeyRecord(512, change["values_written"], NOW - 999)})
    if "exclude" in change:
        cfg = config(exclude=(f"{V4}3",))
    p = planner.plan(neighbours(900), f, journal, cfg)
    assert f"{V4}3" not in targets(p)
    assert {e.key: e.why for e in p.elsewhere} == {f"{V4}3": why}
    assert targets(p)[f"{V4}2"] == 1024  # the other keys are still netagent's
    taken = planner.plan(neighbours(900), f, journal,
                         dataclasses.replace(cfg, remediation=dataclasses.replace(
                             cfg.remediation, take_over=(f"{V4}3",), exclude=())))
    assert targets(taken)[f"{V4}3"] == 2048 and taken.elsewhere == ()


def test_a_released_key_stays_released() -> None:
    journal = Journal(released={f"{V4}3": "changed to 1024 after netagent wrote 2048"})
    p = planner.plan(neighbours(900), facts(), journal, config())
    assert f"{V4}3" not in targets(p) and not p.elsewhere[0].new


def test_before_linux_5_every_entry_counts() -> None:
    """600 dynamic + 150 PERMANENT entries: 750 (73 %) before 5.0, 600 (59 %) after."""
    old = planner.plan(neighbours(600, permanent=150, kernel=nb.OLD), facts(), Journal(),
                       config())
    assert old.demands[0].count == 750 and targets(old)[f"{V4}3"] == 2048
    new = planner.plan(neighbours(600, permanent=150), facts(), Journal(), config())
    assert new.demands[0].count == 600 and not new.pending


def conntrack(count: int, max_: int = 1000, buckets: int = 64) -> Observations:
    obs = dataclasses.replace(ct._read(FIXTURES, "current"), count=count, max=max_,
                              buckets=buckets)
    assert isinstance(obs, ConntrackObservation)
    return Observations(current={"conntrack": obs})


def test_conntrack_max_and_hashsize() -> None:
    f = facts(net__netfilter__nf_conntrack_max=1000, nf_conntrack__hashsize=64)
    p = planner.plan(conntrack(800), f, Journal(), config())
    assert targets(p) == {"net.netfilter.nf_conntrack_max": 2048,
                          "nf_conntrack.hashsize": 256}  # 512 capped at x4
    unwritable = planner.plan(conntrack(800), dataclasses.replace(f, hashsize_writable=False),
                              Journal(), config())
    assert "nf_conntrack.hashsize" not in targets(unwritable)
    assert any("hashsize is not writable" in r.reason for r in unwritable.refusals)
    pod = planner.plan(conntrack(800), facts(net__ipv4__neigh__default__gc_thresh3=None,
                                             net__netfilter__nf_conntrack_max=1000),
                       Journal(), config())
    assert not pod.actions and "initial network namespace" in pod.refusals[0].reason


def dns(fixture: str | None, *, answering: bool) -> Observations:
    n = d.nodelocal(FIXTURES, fixture, answering=answering)
    obs = d.observe(d.resolver([d.probe(0.002)]), nodelocal=n)
    assert isinstance(obs.current["dns"], DnsObservation)
    return obs


def test_notrack_is_restored_then_removed() -> None:
    missing = planner.plan(dns("nft-iptables-notrack-missing.json", answering=True), facts(),
                           Journal(), config())
    (add,) = missing.notrack
    assert add.add and add.address == "169.254.20.10"
    present = planner.plan(dns("nft-notrack.json", answering=True), facts(),
                           Journal(notrack="169.254.20.10"), config())
    assert present.notrack == ()
    stopped = planner.plan(dns("nft-notrack.json", answering=False), facts(),
                           Journal(notrack="169.254.20.10"), config())
    assert [(n.add, n.address) for n in stopped.notrack] == [(False, "169.254.20.10")]
    off = planner.plan(dns("nft-iptables-notrack-missing.json", answering=True), facts(),
                       Journal(), config(notrack=False))
    assert off.notrack == ()


def test_a_gc_thresh3_ceiling_keeps_the_scaling_below_it() -> None:
    p = planner.plan(neighbours(1000), facts(), Journal(), config(ceilings=(f"{V4}3=1536",)))
    assert targets(p) == {f"{V4}3": 1536, f"{V4}2": 768, f"{V4}1": 192}


def with_forecast(obs: Observations, seconds: float | None, rate: float | None,
                  table: str = "neighbour.ipv4", count: int = 400) -> Observations:
    forecast = Forecast(table=table, count=count, limit=1024, method="trend",
                        span_seconds=3600, samples=240, rate_per_second=rate,
                        seconds_to_full=seconds)
    return dataclasses.replace(obs, forecasts={table: forecast})


def test_a_forecast_within_the_horizon_acts_below_the_trigger_and_sizes_for_the_growth(
) -> None:
    """400 of 1,024 (39 %, below the 70 % trigger), growing 0.2 entries/s: full in 52 min,
    within the default hour, so the thresholds are raised now, for the 1,120 entries an hour
    of that growth brings (at 50 %: 2,240, rounded up to 3,072)."""
    obs = with_forecast(neighbours(400), seconds=3120, rate=0.2)
    p = planner.plan(obs, facts(), Journal(), config())
    assert targets(p) == {f"{V4}3": 3072, f"{V4}2": 1536, f"{V4}1": 384}
    assert "forecast full in 3120 s (horizon 3600 s)" in p.actions[0].reason
    assert "1120 entries expected within the 3600 s horizon" in p.actions[0].reason
    # beyond the horizon, or with no forecast (netagent remediate), nothing is due
    for late in (with_forecast(neighbours(400), seconds=7200, rate=0.1),
                 with_forecast(neighbours(400), seconds=None, rate=None), neighbours(400)):
        assert not planner.plan(late, facts(), Journal(), config()).pending
    # a shorter horizon waits longer
    assert not planner.plan(obs, facts(), Journal(), config(horizon_seconds=1800)).pending
