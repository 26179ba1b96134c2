"""Neighbour-table families from a ``NeighbourSnapshot`` (the ``neighbours`` source).

A person sees the same with ``ip -s neigh show`` per namespace, ``cat /proc/net/stat/arp_cache``
and ``sysctl net.ipv4.neigh.default``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from netagent.exporter.scrape import Scrape, expect
from netagent.model import NeighbourObservation, NeighbourSnapshot
from netagent.parse.neighbours import GcRule
from netagent.parse.netlink import NUD_STATES

# Every state is exported, zeros included, so a series does not vanish when a state empties.
STATES = tuple(NUD_STATES[bit] for bit in sorted(NUD_STATES))


def export(obs: object, scrape: Scrape) -> Iterator[Metric]:
    return families(expect(obs, NeighbourSnapshot))


def families(snapshot: NeighbourSnapshot) -> Iterator[Metric]:
    entries = GaugeMetricFamily(
        "netagent_neighbour_entries",
        "Neighbour entries by state, summed over every network namespace read.",
        labels=["family", "state"])
    counted = GaugeMetricFamily(
        "netagent_neighbour_gc_entries",
        "Entries the kernel compares with gc_thresh (Linux >= 5.0: PERMANENT and externally "
        "learned entries excluded); a floor when some namespaces could not be read.",
        labels=["family"])
    thresh = GaugeMetricFamily(
        "netagent_neighbour_gc_thresh",
        "net.ipv{4,6}.neigh.default.gc_thresh{1,2,3}; level 3 is the hard cap.",
        labels=["family", "level"])
    fulls = CounterMetricFamily(
        "netagent_neighbour_table_fulls",
        "Times the kernel refused a new entry because the table was full "
        "(/proc/net/stat/*_cache table_fulls).",
        labels=["family"])
    forced = CounterMetricFamily(
        "netagent_neighbour_forced_gc_runs",
        "Forced garbage collections (table above gc_thresh2) "
        "(/proc/net/stat/*_cache forced_gc_runs).",
        labels=["family"])
    for family, obs in sorted(snapshot.families.items()):
        if obs.table is not None:
            by_state = obs.table.by_state()
            for state in STATES:
                entries.add_metric([family, state], by_state.get(state, 0))
            for state, n in sorted(by_state.items()):
                if state not in STATES:  # an unnamed state bit: still counted, never dropped
                    entries.add_metric([family, state], n)
        gc_entries = counted_entries(obs)
        if gc_entries is not None:
            counted.add_metric([family], gc_entries)
        if obs.limits is not None:
            for level, value in (("1", obs.limits.gc_thresh1), ("2", obs.limits.gc_thresh2),
                                 ("3", obs.limits.gc_thresh3)):
                thresh.add_metric([family, level], value)
        if obs.stats is not None:
            fulls.add_metric([family], obs.stats.get("table_fulls"))
            forced.add_metric([family], obs.stats.get("forced_gc_runs"))
    yield from (entries, counted, thresh, fulls, forced)


def counted_entries(obs: NeighbourObservation) -> int | None:
    """The figure the kernel compares with gc_thresh3, as the neighbour check computes it.

    Before Linux 5.0 every entry counts and the stat file's global ``entries`` is exact even
    when some namespaces cannot be read; from 5.0 it is the sum of the non-exempt entries of
    every namespace read.
    """
    if not GcRule.for_kernel(obs.kernel).exempt_permanent_and_external and obs.stats:
        return obs.stats.entries
    if obs.table is not None:
        return obs.table.counted
    return None
