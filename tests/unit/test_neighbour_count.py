"""Counting entries the way each kernel does, on the recorded dump.

Expectations come from `ip -s neigh` of the same table (independent of the decoder):
state, `ref`, the `updated` age and `extern_learn`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from netagent.model import KernelVersion, NeighbourKey
from netagent.parse.neighbours import GcRule, count_namespace
from netagent.parse.netlink import NeighbourTally, decode_links
from tests.unit.test_netlink import parse_ip_s_neigh, tally

NEW = KernelVersion("6.18.44", 6, 18, 44)
OLD = KernelVersion("4.19.0-25-amd64", 4, 19, 0)


def load(fixtures: Path) -> tuple[NeighbourTally, dict[int, str], list[dict[str, object]]]:
    entries = tally((fixtures / "netlink" / "neigh-ipv4.bin").read_bytes())
    names = {link.ifindex: link.name
             for link in decode_links((fixtures / "netlink" / "links.bin").read_bytes())}
    rows = [r for r in parse_ip_s_neigh((fixtures / "netlink" / "neigh.ip-s-neigh.txt")
                                        .read_text()) if ":" not in str(r["dst"])]
    return entries, names, rows


def test_linux_5_and_later_exempt_permanent_and_external(fixtures: Path) -> None:
    entries, names, rows = load(fixtures)
    counted_rows = [r for r in rows if r["state"] != "permanent" and not r["extern_learn"]]
    stuck_rows = [r for r in counted_rows
                  if r["ref"] or (r["state"] not in ("failed", "noarp") and r["updated_s"] < 5)]
    ns = count_namespace(entries, namespace="lab", rule=GcRule.for_kernel(NEW), link_names=names)
    assert ns.total == len(rows) == 14
    assert ns.counted == len(counted_rows) == 11
    assert ns.unreclaimable == len(stuck_rows)
    assert ns.by_state == {s: sum(1 for r in rows if r["state"] == s)
                           for s in {str(r["state"]) for r in rows}}
    assert ns.by_device == {"vpod0": 14}
    assert ns.by_flag == {"extern_learn": 1}


def test_before_linux_5_every_entry_counts(fixtures: Path) -> None:
    entries, names, rows = load(fixtures)
    rule = GcRule.for_kernel(OLD)
    ns = count_namespace(entries, namespace="lab", rule=rule, link_names=names)
    assert ns.counted == ns.total == 14
    # Old forced GC frees any unreferenced entry that is not PERMANENT, whatever its age.
    assert ns.unreclaimable == sum(1 for r in rows if r["ref"] or r["state"] == "permanent")
    assert "PERMANENT included" in rule.describe()


def test_referenced_and_recent_entries_are_unreclaimable() -> None:
    rule = GcRule.for_kernel(NEW)
    stale_old = NeighbourKey(2, 0x04, 0, 0, referenced=False, recently_updated=False)
    stale_new = NeighbourKey(2, 0x04, 0, 0, referenced=False, recently_updated=True)
    failed_new = NeighbourKey(2, 0x20, 0, 0, referenced=False, recently_updated=True)
    held = NeighbourKey(2, 0x04, 0, 0, referenced=True, recently_updated=False)
    validated = NeighbourKey(2, 0x04, 0, 0x04, referenced=False, recently_updated=False)
    no_cacheinfo = NeighbourKey(2, 0x04, 0, 0, referenced=None, recently_updated=None)
    assert rule.reclaimable(stale_old)
    assert not rule.reclaimable(stale_new)
    assert rule.reclaimable(failed_new)
    assert not rule.reclaimable(held)
    assert not rule.counts(validated)
    assert rule.reclaimable(no_cacheinfo)  # never overstate the pressure
    entries: NeighbourTally = Counter({stale_old: 3, stale_new: 1, failed_new: 1, held: 1,
                                       validated: 1})
    ns = count_namespace(entries, namespace="x", rule=rule, link_names={})
    assert (ns.total, ns.counted, ns.unreclaimable) == (7, 6, 2)
    assert ns.by_device == {"if2": 7}
