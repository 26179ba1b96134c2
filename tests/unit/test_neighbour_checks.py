"""neighbour.ipv4 / neighbour.ipv6 decisions on records."""

from __future__ import annotations

import pytest

from netagent.checks.neighbours import check_family, evaluate
from netagent.config import NeighbourThresholds
from netagent.model import (
    ChangeSet,
    KernelVersion,
    NamespaceNeighbours,
    NeighbourLimits,
    NeighbourObservation,
    NeighbourSnapshot,
    NeighbourStats,
    NeighbourTable,
    Observations,
    Status,
    SysctlChange,
)

NEW = KernelVersion("6.18.44", 6, 18, 44)
OLD = KernelVersion("4.19.0", 4, 19, 0)
LIMITS = NeighbourLimits(gc_thresh1=128, gc_thresh2=512, gc_thresh3=1024, gc_interval=30,
                         gc_stale_time=60)
T = NeighbourThresholds()


def observation(counted: int, *, entries: int | None = None, table_fulls: int = 0,
                unreadable: dict[str, str] | None = None, kernel: KernelVersion = NEW,
                permanent: int = 0, at: float = 10.0) -> NeighbourObservation:
    ns = NamespaceNeighbours(
        namespace="nalab-x-node", total=counted + permanent, counted=counted,
        unreclaimable=counted // 2, by_state={"stale": counted, "permanent": permanent},
        by_device={"vpod0": counted + permanent}, by_flag={},
    )
    table = NeighbourTable(family="ipv4", namespaces=(ns,), namespaces_read=3,
                           unreadable=unreadable or {})
    stats = NeighbourStats(entries=counted + permanent if entries is None else entries,
                           counters={"table_fulls": table_fulls, "forced_gc_runs": 7})
    return NeighbourObservation(family="ipv4", kernel=kernel, stats=stats, limits=LIMITS,
                                table=table, monotonic=at)


@pytest.mark.parametrize("counted, status", [
    (100, Status.OK),
    (513, Status.WARNING),  # above gc_thresh2, below 80 %
    (820, Status.WARNING),  # 80 %
    (972, Status.WARNING),  # 94.9 %
    (973, Status.CRITICAL),  # 95 %
    (1024, Status.CRITICAL),
])
def test_status_from_utilisation(counted: int, status: Status) -> None:
    result = check_family(observation(counted), None, T)
    assert result.status is status
    assert result.observed == counted
    assert result.limit == 1024


def test_permanent_entries_do_not_count_on_linux_5() -> None:
    result = check_family(observation(100, permanent=900), None, T)
    assert result.status is Status.OK
    assert result.observed == 100


def test_before_linux_5_every_entry_counts() -> None:
    result = check_family(observation(100, permanent=900, kernel=OLD), None, T)
    assert result.status is Status.CRITICAL  # 1000 of 1024
    assert result.observed == 1000
    assert "PERMANENT included" in result.evidence["counting_rule"]


def test_table_fulls_rising_during_the_check_is_critical() -> None:
    before = observation(300, table_fulls=5, at=10.0)
    after = observation(300, table_fulls=9, at=12.0)
    result = check_family(after, before, T)
    assert result.status is Status.CRITICAL
    assert result.evidence["table_fulls_during_check"] == 4
    assert result.evidence["interval_seconds"] == 2.0
    assert "refused 4" in result.summary


def test_table_fulls_since_boot_is_evidence_not_critical() -> None:
    result = check_family(observation(300, table_fulls=5), observation(300, table_fulls=5), T)
    assert result.status is Status.OK
    assert result.evidence["table_fulls_since_boot"] == 5
    assert "table_fulls 5 since boot" in result.summary


def test_unreadable_namespaces_give_bounds() -> None:
    hidden = {"pid:42": "cannot enter network namespace pid:42: Operation not permitted"}
    # what was read is ok, but the global total could be a warning: unknown, with the reason
    result = check_family(observation(100, entries=900, unreadable=hidden), None, T)
    assert result.status is Status.UNKNOWN
    assert result.observed == {"at_least": 100, "at_most": 900}
    assert "cannot tell" in result.summary
    # the floor alone is already a warning: that much is certain
    result = check_family(observation(850, entries=1000, unreadable=hidden), None, T)
    assert result.status is Status.WARNING
    # both bounds ok: ok
    result = check_family(observation(50, entries=300, unreadable=hidden), None, T)
    assert result.status is Status.OK


def test_uninspectable_process_is_harmless_when_totals_match() -> None:
    hidden = {"/proc/1/ns/net": "Permission denied"}
    result = check_family(observation(300, unreadable=hidden), None, T)
    assert result.evidence["exact"] is True
    assert result.observed == 300


def test_recommendation_sizes_for_headroom() -> None:
    result = check_family(observation(870), None, T)
    assert result.status is Status.WARNING
    # 870 entries at <= 50 % of gc_thresh3 -> 1740 -> next multiple of 1024, scaled 1:4:8
    assert [(c.key, c.current, c.target) for c in result.changes] == [
        ("net.ipv4.neigh.default.gc_thresh1", 128, 256),
        ("net.ipv4.neigh.default.gc_thresh2", 512, 1024),
        ("net.ipv4.neigh.default.gc_thresh3", 1024, 2048)]
    assert all(isinstance(c, SysctlChange) and "870 entries" in c.reason
               for c in result.changes)
    group = result.fix[-1]
    assert isinstance(group, ChangeSet)
    assert group.conf_file == "90-netagent-neighbour-ipv4.conf"
    assert check_family(observation(100), None, T).fix == ()


def test_missing_limits_is_unknown_with_reason() -> None:
    obs = NeighbourObservation(
        family="ipv6", kernel=NEW, stats=None, limits=None, table=None,
        problems={"stats": "/proc/net/stat/ndisc_cache does not exist (it exists only in "
                           "the initial network namespace)"})
    result = check_family(obs, None, T)
    assert result.status is Status.UNKNOWN
    assert "initial network namespace" in result.summary


def test_failed_source_gives_unknown_checks_for_both_families() -> None:
    results = evaluate(Observations(current={}, errors={"neighbours": "boom"}), T)
    assert [r.id for r in results] == ["neighbour.ipv4", "neighbour.ipv6"]
    assert all(r.status is Status.UNKNOWN and "boom" in r.summary for r in results)


def test_evaluate_uses_the_baseline() -> None:
    before = NeighbourSnapshot({"ipv4": observation(10, table_fulls=0, at=1.0)})
    after = NeighbourSnapshot({"ipv4": observation(10, table_fulls=1, at=3.0)})
    (result,) = evaluate(Observations(current={"neighbours": after},
                                      baseline={"neighbours": before}), T)
    assert result.status is Status.CRITICAL


def test_capacity_from_cluster_size() -> None:
    # 300 counted entries on a 100-node cluster: 3 per node, gc_thresh3 1024 -> 341 nodes
    result = check_family(observation(300), None, T, nodes=100)
    assert result.status is Status.OK
    assert result.evidence["entries_per_node"] == 3.0
    assert result.evidence["nodes_tolerated"] == 341
    assert "room for about 341 nodes" in result.summary
    # today 29 %, but at 200 nodes 600 entries must stay <= 70 %: 857 -> 1024 is enough
    assert result.changes == ()
    # 450 entries: 2x = 900 > 70 % of 1024 -> size for 900 / 0.7 = 1286 -> 2048
    result = check_family(observation(450), None, T, nodes=100)
    assert result.status is Status.OK
    assert {c.key: c.target for c in result.changes}[
        "net.ipv4.neigh.default.gc_thresh3"] == 2048
    assert "a cluster of 200 nodes" in result.changes[0].reason
    # without the node count the same table needs nothing (450 <= 50 % of 1024)
    assert check_family(observation(450), None, T).changes == ()
