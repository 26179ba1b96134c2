"""Counting neighbour entries the way the kernel does (``net/core/neighbour.c``).

Which entries count against ``gc_thresh*``:
- Linux >= 5.0 (commit 58956317c8de, "neighbor: Improve garbage collection"): only entries on
  the table's ``gc_list``, i.e. not PERMANENT and not externally learned (NTF_EXT_LEARNED;
  since 6.17 also NTF_EXT_EXT_VALIDATED in NDA_FLAGS_EXT).
- Before 5.0: every entry (``tbl->entries``), PERMANENT ones included.

Which counted entries forced GC (``neigh_forced_gc``) can free:
- >= 5.0: unreferenced (``ndm_refcnt == 0``) and FAILED, NOARP, or not updated for 5 s.
- <  5.0: unreferenced and not PERMANENT, whatever its age.
Everything else is *unreclaimable*: when those alone reach gc_thresh3, allocation fails.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from netagent.model import KernelVersion, NamespaceNeighbours, NeighbourKey
from netagent.parse.netlink import (
    NTF_EXT_EXT_VALIDATED,
    NTF_EXT_FLAGS,
    NTF_EXT_LEARNED,
    NTF_FLAGS,
    NUD_FAILED,
    NUD_NOARP,
    NUD_PERMANENT,
    NUD_STATES,
    NeighbourTally,
)

USER_HZ = 100  # ndm_* ages are clock_t (jiffies_to_clock_t), always in USER_HZ
# neigh_forced_gc spares entries updated within the last 5 s: the NeighbourKey field
# ``recently_updated`` is ``ndm_updated <= RECENT_TICKS``.
RECENT_TICKS = 5 * USER_HZ


@dataclass(frozen=True)
class GcRule:
    """How the running kernel counts entries against gc_thresh and which GC may free
    (docs/design.md §2.1)."""

    exempt_permanent_and_external: bool  # Linux >= 5.0

    @classmethod
    def for_kernel(cls, kernel: KernelVersion) -> GcRule:
        return cls(exempt_permanent_and_external=kernel.at_least(5, 0))

    def describe(self) -> str:
        if self.exempt_permanent_and_external:
            return ("Linux >= 5.0: PERMANENT and externally learned entries do not count "
                    "against gc_thresh")
        return "Linux < 5.0: every entry, PERMANENT included, counts against gc_thresh"

    def counts(self, entry: NeighbourKey) -> bool:
        if not self.exempt_permanent_and_external:
            return True
        return not (
            entry.state & NUD_PERMANENT
            or entry.flags & NTF_EXT_LEARNED
            or entry.flags_ext & NTF_EXT_EXT_VALIDATED
        )

    def reclaimable(self, entry: NeighbourKey) -> bool:
        """Whether forced GC could free this (counted) entry now.

        Without NDA_CACHEINFO the reference count is unknown; such an entry is taken as
        reclaimable so the unreclaimable figure never overstates pressure.
        """
        if entry.referenced is None:
            return True
        if entry.referenced:
            return False
        if not self.exempt_permanent_and_external:
            return not entry.state & NUD_PERMANENT
        if entry.state & (NUD_FAILED | NUD_NOARP):
            return True
        return not entry.recently_updated


def state_name(state: int) -> str:
    return NUD_STATES.get(state, f"0x{state:02x}")


def flag_names(entry: NeighbourKey) -> list[str]:
    names = [name for bit, name in NTF_FLAGS.items() if entry.flags & bit]
    names += [name for bit, name in NTF_EXT_FLAGS.items() if entry.flags_ext & bit]
    return names


def count_namespace(
    tally: NeighbourTally,
    *,
    namespace: str,
    rule: GcRule,
    link_names: Mapping[int, str],
) -> NamespaceNeighbours:
    """Fold one namespace's tally (entries by NeighbourKey, ``parse.netlink.tally_neighbours``)
    into counts by state, device and flag, applying the rules once per distinct key."""
    total = counted = unreclaimable = 0
    by_state: Counter[str] = Counter()
    by_device: Counter[str] = Counter()
    by_flag: Counter[str] = Counter()
    for fields, n in tally.items():
        entry = NeighbourKey(*fields)
        total += n
        if rule.counts(entry):
            counted += n
            if not rule.reclaimable(entry):
                unreclaimable += n
        by_state[state_name(entry.state)] += n
        by_device[link_names.get(entry.ifindex, f"if{entry.ifindex}")] += n
        for name in flag_names(entry):
            by_flag[name] += n
    return NamespaceNeighbours(
        namespace=namespace,
        total=total,
        counted=counted,
        unreclaimable=unreclaimable,
        by_state=dict(by_state),
        by_device=dict(by_device),
        by_flag=dict(by_flag),
    )
