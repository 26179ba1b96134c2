"""conntrack.table and conntrack.errors on observations read from the recorded fixtures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from netagent.checks import conntrack as checks
from netagent.checks import registry
from netagent.config import Config, ConntrackThresholds
from netagent.errors import ConfigError
from netagent.model import (
    ChangeSet,
    ConntrackObservation,
    ConntrackStats,
    ModuleParameterChange,
    Observations,
    Status,
    SysctlChange,
)
from netagent.sources.conntrack import ConntrackSource

T = ConntrackThresholds()


def _read(fixtures: Path, moment: str, *, at: float = 0.0) -> ConntrackObservation:
    def no_netlink() -> list[dict[str, int]]:
        raise AssertionError("the fixtures have the procfs file")
    return ConntrackSource(proc_root=str(fixtures / "conntrack" / moment / "proc"),
                           netlink=no_netlink, clock=lambda: at).collect()


def _by_id(obs: Observations) -> dict[str, checks.CheckResult]:
    return {r.id: r for r in checks.evaluate(obs, T)}


def test_roomy_table_is_ok_without_recommendation(fixtures: Path) -> None:
    result = checks.check_table(_read(fixtures, "current"), T)
    assert result.status is Status.OK
    assert result.observed == 338 and result.limit == 262144
    assert result.fix == () and result.changes == ()
    assert result.evidence["average_chain_length"] == round(338 / 262144, 3)
    assert "0% of nf_conntrack_max" in result.summary


def test_full_table_is_critical_with_sizing(fixtures: Path) -> None:
    result = checks.check_table(_read(fixtures, "full"), T)
    assert result.status is Status.CRITICAL
    assert "full" in result.summary
    # 338 entries at 50% headroom -> 676 -> next power of two; the global hash table
    # (262144 buckets) is already larger than max/4, so it is left alone
    assert result.changes == (SysctlChange(
        key="net.netfilter.nf_conntrack_max", current=338, target=1024,
        reason="338 entries at most 50% of nf_conntrack_max, four entries per bucket"),)
    (group,) = result.fix
    assert isinstance(group, ChangeSet) and group.conf_file == "90-netagent-conntrack.conf"


@pytest.mark.parametrize("count, status", [
    (740, Status.OK), (750, Status.WARNING), (899, Status.WARNING), (900, Status.CRITICAL)])
def test_table_thresholds(fixtures: Path, count: int, status: Status) -> None:
    obs = dataclasses.replace(_read(fixtures, "current"), count=count, max=1000, buckets=64)
    result = checks.check_table(obs, T)
    assert result.status is status
    if status is not Status.OK:
        # 1000 entries at most at 50% of the new max: 2048, buckets max/4 = 512 > 64
        new_max = 2048 if count > 512 else 1024
        sysctl, hashsize = result.changes
        assert isinstance(sysctl, SysctlChange) and isinstance(hashsize, ModuleParameterChange)
        assert (sysctl.key, sysctl.current, sysctl.target) == (
            "net.netfilter.nf_conntrack_max", 1000, new_max)
        assert (hashsize.path, hashsize.current, hashsize.target) == (
            "/sys/module/nf_conntrack/parameters/hashsize", 64, new_max // 4)


def test_unlimited_table_is_ok(fixtures: Path) -> None:
    obs = dataclasses.replace(_read(fixtures, "current"), max=0)
    assert checks.check_table(obs, T).status is Status.OK


def test_drops_during_the_interval_are_critical(fixtures: Path) -> None:
    before = _read(fixtures, "before", at=10.0)
    after = _read(fixtures, "full", at=12.0)
    result = _by_id(Observations(current={"conntrack": after},
                                 baseline={"conntrack": before}))[checks.ERRORS]
    assert result.status is Status.CRITICAL
    assert result.evidence["deltas"]["drop"] == 25
    assert result.evidence["per_second"]["drop"] == 12.5
    assert result.evidence["interval_seconds"] == 2.0
    assert result.observed == {"drop": 12.5, "early_drop": 0.0, "insert_failed": 0.0}
    assert "table full" in result.evidence["likely_cause"]
    # full at some moment: sized for a peak of nf_conntrack_max (338 -> 1024)
    assert [(c.key, c.target) for c in result.changes if isinstance(c, SysctlChange)] == [
        ("net.netfilter.nf_conntrack_max", 1024)]


def test_quiet_interval_is_ok_even_after_old_drops(fixtures: Path) -> None:
    # full -> current: the 25 drops happened before the baseline
    result = checks.check_errors(_read(fixtures, "current", at=5.0),
                                 _read(fixtures, "full", at=3.0), T)
    assert result.status is Status.OK
    assert result.evidence["since_boot"]["drop"] == 25
    assert result.evidence["deltas"]["drop"] == 0
    assert result.fix == ()


def test_without_baseline_rates_are_unknown(fixtures: Path) -> None:
    full = checks.check_errors(_read(fixtures, "full"), None, T)
    assert full.status is Status.CRITICAL  # the table is full right now
    assert full.evidence["per_second"] is None
    assert "unknown" in full.evidence["rates"]
    earlier = checks.check_errors(_read(fixtures, "current"), None, T)
    assert earlier.status is Status.WARNING  # dropped since boot, not full now
    assert "rates unknown" in earlier.summary
    clean = checks.check_errors(_read(fixtures, "before"), None, T)
    assert clean.status is Status.OK


def _with_counters(obs: ConntrackObservation, at: float, **counters: int
                   ) -> ConntrackObservation:
    assert obs.stats is not None
    stats = dataclasses.replace(obs.stats, counters={**obs.stats.counters, **counters})
    return dataclasses.replace(obs, stats=stats, monotonic=at)


def test_insert_failed_rate_above_the_limit_warns(fixtures: Path) -> None:
    base = _read(fixtures, "current")
    before = _with_counters(base, 0.0, insert_failed=100, drop=25)
    slow = _with_counters(base, 10.0, insert_failed=105, drop=25)   # 0.5/s
    fast = _with_counters(base, 10.0, insert_failed=150, drop=25)   # 5/s
    assert checks.check_errors(slow, before, T).status is Status.OK
    result = checks.check_errors(fast, before, T)
    assert result.status is Status.WARNING
    assert result.evidence["per_second"]["insert_failed"] == 5.0
    assert "insertion race" in result.evidence["likely_cause"]
    assert "single-request-reopen" in result.advice
    assert "node-local DNS cache" in result.advice
    assert result.changes == ()  # the race is not fixed by a bigger table
    stricter = dataclasses.replace(T, insert_failed_per_second=0.1)
    assert checks.check_errors(slow, before, stricter).status is Status.WARNING


def test_reset_counter_gives_unknown_delta(fixtures: Path) -> None:
    base = _read(fixtures, "current")
    before = _with_counters(base, 0.0, insert_failed=100)
    after = _with_counters(base, 1.0, insert_failed=3)
    result = checks.check_errors(after, before, T)
    assert result.evidence["deltas"]["insert_failed"] is None


def test_legacy_kernel_lists_counters_it_lacks(fixtures: Path) -> None:
    from netagent.parse.conntrack import parse_proc_stats
    from netagent.parse.kernel import parse_release
    stats = parse_proc_stats(
        (fixtures / "conntrack/legacy/proc/net/stat/nf_conntrack").read_text())
    obs = ConntrackObservation(kernel=parse_release("3.5.0"), count=0x85, max=65536,
                               buckets=16384, stats=stats)
    result = checks.check_errors(obs, None, T)
    assert result.evidence["not_reported_by_this_kernel"] == ["clash_resolve", "chaintoolong"]
    assert all(v.startswith("no upstream")
               for v in result.evidence["kernel_race_fixes"].values())


def test_failed_source_gives_two_unknowns() -> None:
    results = registry.evaluate(
        Observations(current={}, errors={"conntrack": "nf_conntrack is not loaded"}),
        Config(), sources=["conntrack"])
    assert [r.id for r in results] == ["conntrack.table", "conntrack.errors"]
    assert all(r.status is Status.UNKNOWN and "not loaded" in r.summary for r in results)


def test_unreadable_stats_make_errors_unknown_but_not_table(fixtures: Path) -> None:
    obs = dataclasses.replace(_read(fixtures, "current"), stats=None,
                              problems={"stats": "needs CAP_NET_ADMIN"})
    results = _by_id(Observations(current={"conntrack": obs}))
    assert results[checks.TABLE].status is Status.OK
    assert results[checks.ERRORS].status is Status.UNKNOWN
    assert "CAP_NET_ADMIN" in results[checks.ERRORS].summary


def test_thresholds_come_from_the_config_file(tmp_path: Path) -> None:
    from netagent.config import load
    path = tmp_path / "netagent.yaml"
    path.write_text("thresholds:\n  conntrack:\n    warning_ratio: 0.5\n"
                    "    insert_failed_per_second: 0.2\n")
    config = load(path)
    assert config.thresholds.conntrack.warning_ratio == 0.5
    assert config.thresholds.conntrack.insert_failed_per_second == 0.2
    assert config.thresholds.conntrack.critical_ratio == 0.9
    for bad, message in [("critical_ratio: 0.6\n    warning_ratio: 0.7", "must be below"),
                         ("headroom_ratio: 2", "between"), ("bogus: 1", "unknown key")]:
        path.write_text(f"thresholds:\n  conntrack:\n    {bad}\n")
        with pytest.raises(ConfigError, match=message):
            load(path)


def test_every_event_metric_is_in_the_record(fixtures: Path) -> None:
    from netagent.model import CONNTRACK_EVENTS
    obs = _read(fixtures, "current")
    assert obs.stats is not None
    for event in CONNTRACK_EVENTS:
        assert obs.stats.get(event) is not None, event
    assert isinstance(obs.stats, ConntrackStats)
    assert obs.count is not None and obs.max is not None and obs.buckets is not None


def test_without_baseline_clash_drops_alone_are_not_table_full(fixtures: Path) -> None:
    # an unresolved clash counts in insert_failed and drop: no sign of a full table
    base = _read(fixtures, "before")
    clashes = _with_counters(base, 0.0, insert_failed=7, drop=7)
    result = checks.check_errors(clashes, None, T)
    assert result.status is Status.OK
    assert "insert_failed 7" in result.summary
    fuller = _with_counters(base, 0.0, insert_failed=7, drop=9)
    assert checks.check_errors(fuller, None, T).status is Status.WARNING
