"""The tables an observation measures, as the forecasts take them (``checks.forecasts``)."""

from __future__ import annotations

from typing import Any

from netagent.checks.conntrack import conntrack_level
from netagent.checks.forecasts import Level
from netagent.checks.neighbours import neighbour_level
from netagent.model import ConntrackObservation, NeighbourSnapshot


def levels(observation: Any) -> dict[str, Level]:
    """Each table ``observation`` measures, by forecast key ("neighbour.ipv4", "conntrack")."""
    out: dict[str, Level] = {}
    if isinstance(observation, NeighbourSnapshot):
        for family, obs in observation.families.items():
            level = neighbour_level(obs)
            if level is not None:
                out[f"neighbour.{family}"] = level
    elif isinstance(observation, ConntrackObservation):
        level = conntrack_level(observation)
        if level is not None:
            out["conntrack"] = level
    return out
