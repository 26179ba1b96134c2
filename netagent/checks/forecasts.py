"""What the forecasts take from each observation, and how the checks use and word them.

The agent feeds the ``Level`` of every table (``checks.levels``) to its
``netagent.forecast.Forecaster``; ``netagent check`` has no history, so ``forecast_of``
falls back to the short-term rate between the baseline sample and the collection.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from netagent import forecast
from netagent.config import ForecastConfig
from netagent.model import (
    ConntrackObservation,
    Forecast,
    NeighbourObservation,
    Observations,
    Status,
)


class Level(NamedTuple):
    """A table at one moment: the count its check judges, its limit, and the kernel's own
    total (which the cheap baseline sample of ``netagent check`` also reads), at ``t``."""

    entries: int
    limit: int
    total: int
    t: float


def forecast_of(obs: Observations, key: str, level: Level, before: Level | None,
                config: ForecastConfig) -> Forecast | None:
    """The agent's forecast of ``key``, or in ``netagent check`` the short-term one."""
    if obs.forecasts is not None:
        return obs.forecasts.get(key)
    if before is None:
        return None
    return forecast.short_term(key, (before.t, before.total), (level.t, level.total),
                               level.entries, level.limit, config)


def baseline_total(before: NeighbourObservation | ConntrackObservation | None
                   ) -> Level | None:
    """The baseline sample's total (the sample reads no table and, for conntrack, no limit)."""
    if isinstance(before, NeighbourObservation) and before.stats is not None:
        return Level(before.stats.entries, 0, before.stats.entries, before.monotonic)
    if isinstance(before, ConntrackObservation) and before.count is not None:
        return Level(before.count, 0, before.count, before.monotonic)
    return None


def projected(count: int, f: Forecast | None, config: ForecastConfig) -> int:
    """The count to size a fix for: today's, or, while a forecast warns, the count one
    ``warning_seconds`` of today's growth from now."""
    if f is None or f.level is Status.OK or not f.rate_per_second:
        return count
    return max(count, int(count + f.rate_per_second * config.warning_seconds))


def growth_words(config: ForecastConfig) -> str:
    """How ``projected`` counts are described in a fix."""
    return f"expected after {duration(config.warning_seconds)[1:]} more at today's growth"


def duration(seconds: float) -> str:
    """``~25 min``: a time to full as an operator reads it."""
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"~{seconds / 3600:.1f} h"
    return f"~{seconds / 86400:.1f} days"


def rate_text(per_second: float) -> str:
    per_minute = per_second * 60
    if per_minute >= 10:
        return f"+{per_minute:.0f} entries/min"
    if per_minute >= 0.1:
        return f"+{per_minute:.1f} entries/min"
    return f"+{per_minute * 60:.1f} entries/h"


def words(f: Forecast | None) -> str:
    """The summary's clause: how fast the table grows and when it is full, or ""."""
    if f is None:
        return ""
    parts = []
    if f.rate_per_second and f.seconds_to_full is not None:
        how = f"{rate_text(f.rate_per_second)}"
        if f.method == "short-term":
            how += f" over the last {f.span_seconds:.0f} s (short-term rate)"
        parts.append(f"{how}, full in {duration(f.seconds_to_full)}"
                     if f.seconds_to_full > 0 else f"{how}, full")
    if f.nodes_until_full is not None and f.nodes:
        text = f"full at about {f.nodes + f.nodes_until_full} nodes"
        if f.seconds_to_full_by_nodes is not None and f.node_growth_per_second:
            text += (f"; at +{f.node_growth_per_second * 3600:.1f} nodes/h, in "
                     f"{duration(f.seconds_to_full_by_nodes)}")
        parts.append(text)
    return "; ".join(parts)


def evidence(f: Forecast | None) -> dict[str, Any]:
    if f is None:
        return {}
    out: dict[str, Any] = {
        "method": f.method,
        "span_seconds": round(f.span_seconds, 1),
        "samples": f.samples,
        "growth_per_minute": None if f.rate_per_second is None
        else round(f.rate_per_second * 60, 2),
        "seconds_to_full": None if f.seconds_to_full is None else round(f.seconds_to_full),
        "estimates_per_minute": {k: round(v * 60, 2) for k, v in f.estimates.items()},
    }
    if f.held:
        out["held"] = f.held
    if f.nodes_until_full is not None:
        out["nodes_until_full"] = f.nodes_until_full
        out["node_growth_per_hour"] = None if f.node_growth_per_second is None \
            else round(f.node_growth_per_second * 3600, 2)
        out["seconds_to_full_by_nodes"] = None if f.seconds_to_full_by_nodes is None \
            else round(f.seconds_to_full_by_nodes)
    return {"forecast": out}
