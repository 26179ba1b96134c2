"""Neighbour observations built from the real captures in tests/fixtures/exporter.

``record.py`` there saved, from one moment on this machine: a proc root (stat files and
sysctls), the raw rtnetlink dumps of a lab node namespace and ``ip neigh show`` of the same
table. These helpers turn the captures into the records the neighbour source returns, and
parse the ``ip`` output independently as the oracle.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from netagent.model import NeighbourSnapshot, NeighbourTable
from netagent.parse.neighbours import RECENT_TICKS, GcRule, count_namespace
from netagent.parse.netlink import NeighbourTally, decode_links, tally_neighbours
from netagent.sources.neighbours import NeighbourSource

HERE = Path(__file__).resolve().parent.parent / "fixtures" / "exporter"
NAMESPACE = "nalab-exfx-node"


def snapshot(*, monotonic: float = 100.0) -> NeighbourSnapshot:
    """The recorded node namespace as the ``neighbours`` source would report it."""
    source = NeighbourSource(proc_root=str(HERE / "proc"), clock=lambda: monotonic)
    base = source.sample()  # stats and limits from the recorded proc root
    links = {link.ifindex: link.name
             for link in decode_links((HERE / "node-links.bin").read_bytes())}
    families = {}
    for family, obs in base.families.items():
        entries: NeighbourTally = Counter()
        tally_neighbours((HERE / f"node-neigh-{family}.bin").read_bytes(), entries,
                         recent_ticks=RECENT_TICKS)
        counted = count_namespace(entries, namespace=NAMESPACE,
                                  rule=GcRule.for_kernel(obs.kernel), link_names=links)
        table = NeighbourTable(family=family, namespaces=(counted,), namespaces_read=1,
                               unreadable={})
        families[family] = dataclasses.replace(obs, table=table)
    return NeighbourSnapshot(families)


def ip_neigh_states() -> dict[str, Counter[str]]:
    """``ip neigh show`` of the same table: family -> state (lower case) -> entries."""
    out: dict[str, Counter[str]] = {"ipv4": Counter(), "ipv6": Counter()}
    for line in (HERE / "node-neigh.txt").read_text().splitlines():
        fields = line.split()
        if not fields:
            continue
        family = "ipv6" if ":" in fields[0] else "ipv4"
        out[family][fields[-1].lower()] += 1
    return out


def proc_int(relative: str) -> int:
    return int((HERE / "proc" / relative).read_text().split()[0])


def stat_column_sum(family: str, column: str) -> int:
    """A per-CPU counter of the recorded stat file, summed over the CPU rows."""
    name = {"ipv4": "arp_cache", "ipv6": "ndisc_cache"}[family]
    header, *rows = (HERE / "proc" / "net" / "stat" / name).read_text().split("\n")
    index = header.split().index(column)
    return sum(int(row.split()[index], 16) for row in rows if row.strip())
