"""The fleet report as text (coloured on a terminal) and as JSON (a stable shape)."""

from __future__ import annotations

import json
import math
from typing import Any

from netagent.fleet.analysis import METRICS, FleetReport, Headroom
from netagent.model import Status
from netagent.report.text import coloured


def duration(seconds: float) -> str:
    """~25 min, ~3.5 h, ~12 d."""
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"~{seconds / 3600:.1f} h"
    return f"~{seconds / 86400:.0f} d"


def span(seconds: float) -> str:
    """A configured duration as it was typed: 90s, 30m, 1h, 2d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _num(value: float) -> str:
    if abs(value) >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.4g}"


def text(report: FleetReport, *, colour: bool = False) -> str:
    def tag(status: Status) -> str:
        return coloured(status.name, status) if colour else status.name

    c = report.counts
    lines = [f"netagent fleet: {report.nodes} nodes, {tag(report.status)} "
             f"({c['critical']} critical, {c['warning']} warning, {c['unknown']} unknown; "
             f"window {span(report.window)}, alpha {report.alpha:g})"]
    for level in ("critical", "warning"):
        names = report.unhealthy[level]
        if names:
            shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more"
                                             if len(names) > 10 else "")
            lines.append(f"  {level}: {shown}")

    lines.append("outliers (Smirnov-Grubbs, two-sided):")
    found = report.outliers
    for metric, o in found:
        lines.append(f"  {metric}: {o.node} = {_num(o.value)} (fleet mean {o.mean:.4g}, "
                     f"sd {o.stddev:.3g}; G {o.g:.2f} > {o.critical:.2f})")
    refused = [t for t in report.tests if t.refused]
    for t in refused:
        lines.append(f"  {t.metric}: not tested, {t.refused}")
    if not found and not refused:
        lines.append("  none")

    lines.append("nearest their limits:")
    for table in dict.fromkeys(n.table for n in report.nearest):
        near = [n for n in report.nearest if n.table == table]
        lines.append(f"  {table}: " + ", ".join(
            f"{n.node} {_num(n.value)}/{_num(n.limit)} ({n.ratio:.0%})" for n in near))

    lines.append(f"headroom (sized for {span(report.horizon)} ahead):")
    for h in report.headroom:
        lines.extend(f"  {line}" for line in _headroom_lines(h))
    return "\n".join(lines)


def _headroom_lines(h: Headroom) -> list[str]:
    out = []
    if h.first_node is not None and h.nodes_at_full is not None:
        growth = (f"{h.growth_per_hour:+.1f} nodes/h" if h.growth_per_hour is not None
                  else "unknown growth")
        when = ("already there" if h.seconds_to_full == 0 else
                f"in {duration(h.seconds_to_full)} at {growth}"
                if h.seconds_to_full is not None else f"not growing ({growth})")
        out.append(f"{h.table}: the first node to fill is {h.first_node} "
                   f"(gc_thresh3 {_num(h.first_limit or 0)}) at {h.nodes_at_full} nodes "
                   f"(now {h.nodes_now}): {when}")
    peaks = []
    if h.trend_peak is not None:
        peaks.append(f"trend {h.trend_peak:.0f}")
    if h.growth_peak is not None:
        peaks.append(f"node growth {h.growth_peak:.0f}")
    out.append(f"{h.table}: peak forecast {', '.join(peaks) or 'none'} entries; {h.note}")
    if h.rollout:
        out.append("  roll out: sysctl -w " + " ".join(f"{k}={v}" for k, v in
                                                       h.rollout.items()))
        if h.hashsize is not None:
            out.append(f"            echo {h.hashsize} > "
                       "/sys/module/nf_conntrack/parameters/hashsize")
    elif h.needed is not None:
        out.append(f"  needs {h.sysctl} >= {h.needed}, which every node has: "
                   "nothing to roll out")
    return out


def as_dict(report: FleetReport) -> dict[str, Any]:
    return {
        "nodes": report.nodes,
        "status": report.status.name.lower(),
        "counts": dict(report.counts),
        "unhealthy": {k: list(v) for k, v in report.unhealthy.items()},
        "outliers": [{"metric": m, "node": o.node, "value": o.value, "mean": o.mean,
                      "stddev": o.stddev, "g": round(o.g, 4), "critical": round(o.critical, 4)}
                     for m, o in report.outliers],
        "tests": [{"metric": t.metric, "description": METRICS[t.metric], "nodes": t.nodes,
                   "outliers": len(t.outliers), "refused": t.refused} for t in report.tests],
        "nearest": [{"table": n.table, "node": n.node, "value": n.value, "limit": n.limit,
                     "ratio": round(n.ratio, 4) if math.isfinite(n.ratio) else None}
                    for n in report.nearest],
        "headroom": {h.table: {
            "sysctl": h.sysctl, "nodes_now": h.nodes_now,
            "growth_per_hour": h.growth_per_hour, "first_node": h.first_node,
            "first_limit": h.first_limit, "nodes_at_full": h.nodes_at_full,
            "seconds_to_full": h.seconds_to_full, "trend_peak": h.trend_peak,
            "growth_peak": h.growth_peak, "ratio": h.ratio, "needed": h.needed,
            "rollout": dict(h.rollout), "hashsize": h.hashsize, "note": h.note,
        } for h in report.headroom},
        "window_seconds": report.window,
        "horizon_seconds": report.horizon,
        "alpha": report.alpha,
    }


def as_json(report: FleetReport) -> str:
    return json.dumps(as_dict(report), indent=2, sort_keys=False, allow_nan=False)
