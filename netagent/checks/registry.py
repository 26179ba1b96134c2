"""Which checks read which source."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netagent.checks import conntrack, neighbours
from netagent.config import Config
from netagent.model import CheckResult, Observations

Evaluator = Callable[[Observations, Config], list[CheckResult]]

# source name -> the checks that judge it, in report order
CHECKS: dict[str, Evaluator] = {
    "neighbours": lambda obs, cfg: neighbours.evaluate(obs, cfg.thresholds.neighbour,
                                                       nodes=cluster_nodes(obs, cfg)),
    "conntrack": lambda obs, cfg: conntrack.evaluate(obs, cfg.thresholds.conntrack),
}


def cluster_nodes(obs: Observations, config: Config) -> int | None:
    """The cluster's node count: from configuration (``nodes:``/``--nodes``)."""
    return config.nodes


def evaluate(obs: Observations, config: Config, *, sources: Sequence[str]) -> list[CheckResult]:
    results: list[CheckResult] = []
    for name in sources:
        evaluator = CHECKS.get(name)
        if evaluator is not None:
            results.extend(evaluator(obs, config))
    return results
