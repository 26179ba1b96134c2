"""The fleet report, computed from what Prometheus holds: no I/O here.

Three answers:

- **status**: how many nodes are warning or critical (their own ``netagent_check_status``),
  and the nodes nearest each limit;
- **outliers**: per metric, the nodes a Smirnov-Grubbs test sets apart (``stats.grubbs``);
- **headroom**: for each neighbour table, the cluster size at which the first node reaches
  gc_thresh3 if its entries keep growing with the node count, and when that is at the node
  count's growth over the window; and the limits to roll out, sized from two forecasts of
  the peak at the horizon (the table's own least-squares trend, from Prometheus's
  ``predict_linear``, and entries per node x the node count then), taking the larger, so that
  the peak is at most 70% of the limit when the two agree within 20% and 50% when they do
  not. Conntrack is not tied to the node count: it has one forecast and is sized at 50%.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netagent.checks.sysctl import neighbour_thresholds, round_up
from netagent.fleet import stats
from netagent.model import Status

# What each outlier metric means; the keys are the names in the report and in --json.
METRICS = {
    "neighbour_ipv4_utilisation": "IPv4 neighbour entries / gc_thresh3",
    "neighbour_ipv6_utilisation": "IPv6 neighbour entries / gc_thresh3",
    "conntrack_utilisation": "conntrack entries / nf_conntrack_max",
    "conntrack_insert_failed_rate": "conntrack insert_failed per second",
    "conntrack_drop_rate": "conntrack drop per second",
    "neighbour_table_fulls_rate": "neighbour table_fulls per second",
    "dns_p95_seconds": "DNS probe latency, 95th percentile (s)",
    "overlay_peers_missing": "overlay peers missing",
}
TABLES = {  # table -> (the sysctl of its limit, the outlier metric of its utilisation)
    "neighbour_ipv4": ("net.ipv4.neigh.default.gc_thresh3", "neighbour_ipv4_utilisation"),
    "neighbour_ipv6": ("net.ipv6.neigh.default.gc_thresh3", "neighbour_ipv6_utilisation"),
    "conntrack": ("net.netfilter.nf_conntrack_max", "conntrack_utilisation"),
}
NEAREST = 5
TRUSTED_RATIO = 0.70  # the forecast peak's share of the limit when the forecasts agree
UNTRUSTED_RATIO = 0.50  # ... and when they do not (or there is only one)
AGREEMENT = 0.20  # forecasts within 20% of the larger agree


@dataclass(frozen=True)
class NodeTable:
    """One node's table: entries now, its limit, and the trend's forecast at the horizon."""

    entries: float
    limit: float
    forecast: float | None = None


@dataclass(frozen=True)
class FleetData:
    """What the fleet's Prometheus says, shaped for the analysis."""

    at: float  # unix seconds the instant queries were evaluated at
    window: float
    horizon: float
    tables: Mapping[str, Mapping[str, NodeTable]]  # table -> node -> its table
    rates: Mapping[str, Mapping[str, float]]  # metric -> node -> value (not utilisations)
    statuses: Mapping[str, Mapping[str, int]]  # node -> check -> netagent_check_status
    cluster_nodes: Sequence[tuple[float, float]] = ()  # (t, count) over the window


@dataclass(frozen=True)
class MetricTest:
    metric: str
    nodes: int
    outliers: tuple[stats.Outlier, ...] = ()
    refused: str | None = None


@dataclass(frozen=True)
class Nearest:
    table: str
    node: str
    value: float
    limit: float

    @property
    def ratio(self) -> float:
        return self.value / self.limit if self.limit > 0 else math.inf


@dataclass(frozen=True)
class Headroom:
    table: str
    sysctl: str
    nodes_now: int | None = None
    growth_per_hour: float | None = None  # nodes per hour over the window
    first_node: str | None = None  # the node that reaches its limit first as nodes grow
    first_limit: float | None = None
    nodes_at_full: int | None = None
    seconds_to_full: float | None = None  # None: the cluster is not growing
    trend_peak: float | None = None
    growth_peak: float | None = None
    ratio: float = UNTRUSTED_RATIO
    needed: int | None = None
    rollout: Mapping[str, int] = field(default_factory=dict)  # sysctl -> value
    hashsize: int | None = None  # conntrack's buckets to go with it (kube-proxy's max / 4)
    note: str = ""


@dataclass(frozen=True)
class FleetReport:
    nodes: int
    status: Status
    counts: Mapping[str, int]  # ok / warning / critical / unknown -> nodes
    unhealthy: Mapping[str, tuple[str, ...]]  # warning / critical -> nodes (named first)
    tests: tuple[MetricTest, ...]
    nearest: tuple[Nearest, ...]
    headroom: tuple[Headroom, ...]
    window: float
    horizon: float
    alpha: float

    @property
    def outliers(self) -> list[tuple[str, stats.Outlier]]:
        return [(t.metric, o) for t in self.tests for o in t.outliers]


def analyse(data: FleetData, *, alpha: float,
            t_isf: Callable[[float, int], float]) -> FleetReport:
    metrics: dict[str, Mapping[str, float]] = {}
    for table, nodes in data.tables.items():
        metrics[TABLES[table][1]] = {n: t.entries / t.limit for n, t in nodes.items()
                                     if t.limit > 0}
    metrics.update(data.rates)
    tests = []
    for metric in METRICS:
        values = {n: v for n, v in metrics.get(metric, {}).items() if math.isfinite(v)}
        if not values:
            continue
        try:
            found = stats.grubbs(values, alpha, t_isf)
        except stats.TooFewNodes as err:
            tests.append(MetricTest(metric, len(values), refused=str(err)))
            continue
        tests.append(MetricTest(metric, len(values), tuple(found)))

    every = set(data.statuses) | {n for nodes in data.tables.values() for n in nodes}
    node_status = {n: _worst(data.statuses.get(n, {})) for n in every}
    counts = {s.name.lower(): sum(1 for v in node_status.values() if v is s) for s in Status}
    unhealthy = {s.name.lower(): tuple(sorted(n for n, v in node_status.items() if v is s))
                 for s in (Status.WARNING, Status.CRITICAL)}
    status = Status.OK
    if counts["warning"] or any(t.outliers for t in tests):
        status = Status.WARNING
    if counts["critical"]:
        status = Status.CRITICAL
    return FleetReport(
        nodes=len(every), status=status, counts=counts, unhealthy=unhealthy,
        tests=tuple(tests), nearest=tuple(_nearest(data)),
        headroom=tuple(headroom(data, table) for table in TABLES if data.tables.get(table)),
        window=data.window, horizon=data.horizon, alpha=alpha)


def _worst(checks: Mapping[str, int]) -> Status:
    """A node's status: its worst check, unknown only when no check says more."""
    values = set(checks.values())
    for status in (Status.CRITICAL, Status.WARNING, Status.OK):
        if int(status) in values:
            return status
    return Status.UNKNOWN


def _nearest(data: FleetData) -> list[Nearest]:
    out: list[Nearest] = []
    for table, nodes in data.tables.items():
        ranked = sorted(nodes.items(), key=lambda kv: (-_ratio(kv[1]), kv[0]))
        out.extend(Nearest(table, node, t.entries, t.limit) for node, t in ranked[:NEAREST])
    return out


def _ratio(t: NodeTable) -> float:
    return t.entries / t.limit if t.limit > 0 else math.inf


def headroom(data: FleetData, table: str) -> Headroom:
    nodes = data.tables[table]
    sysctl = TABLES[table][0]
    current_peak = max(t.entries for t in nodes.values())
    trends = [t.forecast for t in nodes.values()
              if t.forecast is not None and math.isfinite(t.forecast)]
    trend_peak = max([current_peak, *trends]) if trends else None
    smallest_limit = min(t.limit for t in nodes.values())
    if table == "conntrack":
        peak = trend_peak if trend_peak is not None else current_peak
        return _sized(Headroom(table, sysctl, trend_peak=trend_peak), peak, UNTRUSTED_RATIO,
                      smallest_limit, note="one forecast (the table's trend): sized at 50%")

    count = data.cluster_nodes[-1][1] if data.cluster_nodes else None
    if not count or count <= 0:
        peak = trend_peak if trend_peak is not None else current_peak
        return _sized(Headroom(table, sysctl, trend_peak=trend_peak), peak, UNTRUSTED_RATIO,
                      smallest_limit, note="netagent_cluster_nodes is not in Prometheus: "
                                           "one forecast, sized at 50%")
    per_node = {n: t.entries / count for n, t in nodes.items() if t.entries > 0}
    growth = stats.slope(data.cluster_nodes)  # nodes per second
    found = Headroom(table, sysctl, nodes_now=int(count),
                     growth_per_hour=None if growth is None else growth * 3600,
                     trend_peak=trend_peak)
    if per_node:
        # the node that fills first as the cluster grows: the least limit per entry per node
        first = min(per_node, key=lambda n: (nodes[n].limit / per_node[n], n))
        at_full = nodes[first].limit / per_node[first]
        seconds = None
        if at_full <= count:
            seconds = 0.0
        elif growth is not None and growth > 0:
            seconds = (at_full - count) / growth
        found = _replace(found, first_node=first, first_limit=nodes[first].limit,
                         nodes_at_full=math.floor(at_full), seconds_to_full=seconds)
    nodes_then = count + max(0.0, (growth or 0.0) * data.horizon)
    growth_peak = max(per_node.values(), default=0.0) * nodes_then
    found = _replace(found, growth_peak=growth_peak)
    if trend_peak is None:
        return _sized(found, max(growth_peak, current_peak), UNTRUSTED_RATIO, smallest_limit,
                      note="no trend forecast: sized at 50%")
    peak = max(trend_peak, growth_peak)
    agree = abs(trend_peak - growth_peak) <= AGREEMENT * peak
    ratio = TRUSTED_RATIO if agree else UNTRUSTED_RATIO
    note = (f"the two forecasts agree within {AGREEMENT:.0%}: sized at {ratio:.0%}" if agree
            else f"the two forecasts differ by more than {AGREEMENT:.0%}: sized at {ratio:.0%}")
    return _sized(found, peak, ratio, smallest_limit, note=note)


def _sized(found: Headroom, peak: float, ratio: float, smallest_limit: float, *,
           note: str) -> Headroom:
    needed = round_up(peak / ratio)
    rollout: dict[str, int] = {}
    hashsize = None
    if needed > smallest_limit:
        if found.table == "conntrack":
            rollout, hashsize = {found.sysctl: needed}, needed // 4
        else:
            rollout = neighbour_thresholds(found.sysctl.rsplit(".", 1)[0], needed)
    return _replace(found, ratio=ratio, needed=needed, rollout=rollout, hashsize=hashsize,
                    note=note)


def _replace(found: Headroom, **changes: Any) -> Headroom:
    import dataclasses

    return dataclasses.replace(found, **changes)
