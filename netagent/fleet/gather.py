"""The PromQL the fleet view asks, and its answers shaped as ``FleetData``.

Prometheus does the per-node arithmetic (``rate``, ``histogram_quantile``,
``predict_linear``), so each answer is one value per node (and family), whatever the fleet's
size; only ``netagent_cluster_nodes`` comes back as a range, one series for the cluster.
Series are told apart by the node label (``instance``: the ServiceMonitor sets it to the
node's name).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Protocol

from netagent.errors import NetagentError
from netagent.fleet.analysis import FleetData, NodeTable
from netagent.parse.prometheus import Sample, Series

# {job="netagent", cluster=~"prod-.*"}: what is inside the braces is added to every selector
_SELECTOR = re.compile(r"\{\s*(.*?)\s*,?\s*\}", re.S)
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_RANGE_POINTS = 1000


class Client(Protocol):
    def query(self, expr: str, *, at: float) -> list[Sample]: ...

    def query_range(self, expr: str, *, start: float, end: float,
                    step: float) -> list[Series]: ...


class FleetQueryError(NetagentError):
    pass


def matchers(selector: str) -> str:
    """The matchers inside ``{...}``; ``ValueError`` when it is not a braced selector."""
    found = _SELECTOR.fullmatch(selector.strip())
    if not found:
        raise ValueError(f"selector {selector!r} is not of the form '{{label=\"value\", ...}}'")
    return found.group(1)


class Queries:
    """The PromQL of the fleet view for one selector, node label and window."""

    def __init__(self, selector: str, *, node_label: str, window: float,
                 horizon: float) -> None:
        if not _LABEL.fullmatch(node_label):
            raise ValueError(f"node label {node_label!r} is not a label name")
        self.inner = matchers(selector)
        self.node = node_label
        self.range = f"[{int(window)}s]"
        self.horizon = int(horizon)

    def sel(self, metric: str, *extra: str) -> str:
        parts = [p for p in (self.inner, *extra) if p]
        return f"{metric}{{{', '.join(parts)}}}"

    def by(self, *labels: str) -> str:
        return f"by ({', '.join((self.node, *labels))})"

    def instant(self) -> dict[str, str]:
        by, by_family, w, h = self.by(), self.by("family"), self.range, self.horizon
        entries = self.sel("netagent_neighbour_gc_entries")
        thresh3 = self.sel("netagent_neighbour_gc_thresh", 'level="3"')
        ct_entries = self.sel("netagent_conntrack_entries")
        ct_max = self.sel("netagent_conntrack_max")
        insert_failed = self.sel("netagent_conntrack_events_total", 'event="insert_failed"')
        drop = self.sel("netagent_conntrack_events_total", 'event="drop"')
        fulls = self.sel("netagent_neighbour_table_fulls_total")
        dns = self.sel("netagent_dns_probe_duration_seconds_bucket")
        missing = self.sel("netagent_overlay_peers_missing")
        checks = self.sel("netagent_check_status")
        return {
            "neighbour_entries": f"max {by_family} ({entries})",
            "neighbour_limit": f"max {by_family} ({thresh3})",
            "neighbour_trend": f"max {by_family} (predict_linear({entries}{w}, {h}))",
            "conntrack_entries": f"max {by} ({ct_entries})",
            "conntrack_limit": f"max {by} ({ct_max})",
            "conntrack_trend": f"max {by} (predict_linear({ct_entries}{w}, {h}))",
            "conntrack_insert_failed_rate": f"sum {by} (rate({insert_failed}{w}))",
            "conntrack_drop_rate": f"sum {by} (rate({drop}{w}))",
            "neighbour_table_fulls_rate": f"sum {by} (rate({fulls}{w}))",
            "dns_p95_seconds": f"histogram_quantile(0.95, sum {self.by('le')} "
                               f"(rate({dns}{w})))",
            "overlay_peers_missing": f"sum {by} ({missing})",
            "check_status": f"max {self.by('check')} ({checks})",
        }

    def cluster_nodes(self) -> str:
        nodes = self.sel("netagent_cluster_nodes")
        return f"max({nodes})"


def gather(client: Client, queries: Queries, *, at: float, window: float,
           horizon: float) -> FleetData:
    exprs = queries.instant()
    # the tables first: when neither is there, nothing else is worth asking
    answers = {name: client.query(exprs[name], at=at)
               for name in ("neighbour_entries", "conntrack_entries")}
    if not answers["neighbour_entries"] and not answers["conntrack_entries"]:
        raise FleetQueryError(
            f"no netagent series match {queries.sel('netagent_neighbour_gc_entries')} "
            "(is the selector right, and does Prometheus scrape netagent?)")
    answers.update({name: client.query(expr, at=at) for name, expr in exprs.items()
                    if name not in answers})
    node = queries.node

    def by_node(name: str, *key: str) -> dict[tuple[str, ...], float]:
        out = {}
        for s in answers[name]:
            labels = (s.labels.get(node, ""), *(s.labels.get(k, "") for k in key))
            if labels[0]:
                out[labels] = s.value
        return out

    tables: dict[str, dict[str, NodeTable]] = {}
    entries, limits = by_node("neighbour_entries", "family"), by_node("neighbour_limit",
                                                                      "family")
    trend = by_node("neighbour_trend", "family")
    for key, count in entries.items():
        limit = limits.get(key)
        if limit is None or not (math.isfinite(count) and math.isfinite(limit)):
            continue
        n, family = key
        tables.setdefault(f"neighbour_{family}", {})[n] = NodeTable(count, limit,
                                                                      trend.get(key))
    ct_entries, ct_limits = by_node("conntrack_entries"), by_node("conntrack_limit")
    ct_trend = by_node("conntrack_trend")
    for key, count in ct_entries.items():
        limit = ct_limits.get(key)
        if limit is not None and limit > 0 and math.isfinite(count):
            tables.setdefault("conntrack", {})[key[0]] = NodeTable(count, limit,
                                                                   ct_trend.get(key))
    rates: dict[str, Mapping[str, float]] = {}
    for name in ("conntrack_insert_failed_rate", "conntrack_drop_rate",
                 "neighbour_table_fulls_rate", "dns_p95_seconds", "overlay_peers_missing"):
        rates[name] = {k[0]: v for k, v in by_node(name).items() if math.isfinite(v)}
    statuses: dict[str, dict[str, int]] = {}
    for (n, check), value in by_node("check_status", "check").items():
        if math.isfinite(value):
            statuses.setdefault(n, {})[check] = int(value)

    step = max(15.0, math.ceil(window / MAX_RANGE_POINTS))
    series = client.query_range(queries.cluster_nodes(), start=at - window, end=at,
                                step=step)
    cluster = tuple((t, v) for s in series[:1] for t, v in s.points if math.isfinite(v))
    return FleetData(at=at, window=window, horizon=horizon, tables=tables, rates=rates,
                     statuses=statuses, cluster_nodes=cluster)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Prometheus-style durations: 90s, 30m, 1h, 1h30m, 2d, 1w; ``ValueError`` otherwise."""
    parts = re.fullmatch(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?",
                         text.strip())
    if not text.strip() or not parts:
        raise ValueError(f"{text!r} is not a duration such as 30m, 1h or 2d")
    seconds = sum(int(v) * _UNITS[u] for v, u in zip(parts.groups(), "wdhms", strict=True)
                  if v)
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return float(seconds)
