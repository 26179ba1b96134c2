"""Conntrack families from a ``ConntrackObservation`` (the ``conntrack`` source).

A person sees the same with ``conntrack -C``, ``conntrack -S`` and
``sysctl net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_buckets``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from netagent.exporter.scrape import Scrape, expect
from netagent.model import CONNTRACK_EVENTS, ConntrackObservation


def export(obs: object, scrape: Scrape) -> Iterator[Metric]:
    return families(expect(obs, ConntrackObservation))


def families(obs: ConntrackObservation) -> Iterator[Metric]:
    # A part the source could not read is left out rather than exported as 0.
    for name, value, help_text in (
        ("netagent_conntrack_entries", obs.count,
         "Connections tracked in the agent's network namespace (nf_conntrack_count)."),
        ("netagent_conntrack_max", obs.max,
         "Global limit of tracked connections (nf_conntrack_max)."),
        ("netagent_conntrack_buckets", obs.buckets,
         "Global size of the conntrack hash table (nf_conntrack_buckets)."),
    ):
        if value is not None:
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            yield gauge
    if obs.stats is None:
        return
    events = CounterMetricFamily(
        "netagent_conntrack_events",
        "Conntrack statistics summed over CPUs (conntrack -S): insert_failed is the NAT "
        "clash behind 5-second DNS timeouts, early_drop evictions of a full table.",
        labels=["event"])
    for event in CONNTRACK_EVENTS:
        count = obs.stats.get(event)
        if count is not None:  # a counter this kernel does not have is absent, not 0
            events.add_metric([event], count)
    yield events
