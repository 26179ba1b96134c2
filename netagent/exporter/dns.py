"""DNS probe families, accumulated over every ``DnsObservation`` (the ``dns`` source).

A person sees one probe with ``dig +tries=2 +timeout=5 @10.96.0.10 kubernetes.default``.
Each collection sends a few probes per resolver; the histogram and the failure counter
add them up since the agent started, so Prometheus can take rates and quantiles. The
buckets resolve milliseconds and put 4.5-5.5 s around glibc's 5-second resolver timeout,
where the conntrack insertion race shows (one lost packet = one whole timeout).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from netagent.exporter.scrape import Scrape, expect
from netagent.model import DnsObservation

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.5, 5.5, 10.0)
# Every (resolver, protocol) seen gets this reason at 0, so rate() sees the first timeout.
ALWAYS_REASON = "timeout"


class Latencies(NamedTuple):
    """One histogram: probes per bucket (not cumulative; the last is above 10 s), sum, probes."""

    per_bucket: tuple[int, ...]
    total: float
    probes: int


@dataclass(frozen=True)
class DnsTotals:
    """Every probe since the agent started: latencies by (resolver, protocol, mode) and
    failures by (resolver, protocol, reason)."""

    latencies: Mapping[tuple[str, str, str], Latencies] = field(default_factory=dict)
    failures: Mapping[tuple[str, str, str], int] = field(default_factory=dict)


def fold_observation(totals: object, obs: object) -> DnsTotals:
    """The catalog's running totals of the dns source."""
    return fold(totals if isinstance(totals, DnsTotals) else None,
                expect(obs, DnsObservation))


def export(obs: object, scrape: Scrape) -> Iterator[Metric]:
    # counters and a histogram over every round: rendered from the agent's running totals
    return families(expect(scrape.totals("dns"), DnsTotals))


def fold(totals: DnsTotals | None, obs: DnsObservation) -> DnsTotals:
    """``totals`` plus every probe of ``obs``: a new record, the old one is not changed."""
    latencies = dict(totals.latencies) if totals else {}
    failures = dict(totals.failures) if totals else {}
    for resolver in obs.resolvers:
        for probe in resolver.probes:
            if not probe.measured:  # cut short by the round's budget: no latency to show
                continue
            # Failed probes are observed too: the histogram's _count is every attempt.
            key = (resolver.resolver, probe.protocol, probe.mode)
            before = latencies.get(key) or Latencies((0,) * (len(BUCKETS) + 1), 0.0, 0)
            index = bisect.bisect_left(BUCKETS, probe.latency)  # le: bound >= latency
            per_bucket = list(before.per_bucket)
            per_bucket[index] += 1
            latencies[key] = Latencies(tuple(per_bucket), before.total + probe.latency,
                                       before.probes + 1)
            failures.setdefault((resolver.resolver, probe.protocol, ALWAYS_REASON), 0)
            reason = probe.failure
            if reason is not None:
                failure = (resolver.resolver, probe.protocol, reason)
                failures[failure] = failures.get(failure, 0) + 1
    return DnsTotals(latencies=latencies, failures=failures)


def families(totals: DnsTotals) -> Iterator[Metric]:
    histogram = HistogramMetricFamily(
        "netagent_dns_probe_duration_seconds",
        "DNS probe latency until every answer arrived or the probe gave up, failed probes "
        "included; mode parallel sends A and AAAA together from one socket as glibc does.",
        labels=["resolver", "protocol", "mode"])
    for key, h in sorted(totals.latencies.items()):
        cumulative, buckets = 0, []
        for bound, n in zip((*BUCKETS, float("inf")), h.per_bucket, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else _le(bound), cumulative))
        histogram.add_metric(list(key), buckets, sum_value=h.total)
    failures = CounterMetricFamily(
        "netagent_dns_probe_failures",
        "DNS probes that got no usable answer, by reason (timeout, connection_refused, "
        "servfail, refused, ...).",
        labels=["resolver", "protocol", "reason"])
    for key, n in sorted(totals.failures.items()):
        failures.add_metric(list(key), n)
    yield from (histogram, failures)


def _le(bound: float) -> str:
    # Prometheus's own format for bucket bounds ("1.0", "0.0025"), as client_python writes.
    return repr(float(bound))
