"""Which checks read which source."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netagent.checks import dns, neighbours
from netagent.config import Config
from netagent.model import CheckResult, Observations

Evaluator = Callable[[Observations, Config], list[CheckResult]]

# source name -> the checks that judge it, in report order
CHECKS: dict[str, Evaluator] = {
    "neighbours": lambda obs, cfg: neighbours.evaluate(obs, cfg.thresholds.neighbour),
    "dns": lambda obs, cfg: dns.evaluate(obs, cfg.thresholds.dns),
}


def evaluate(obs: Observations, config: Config, *, sources: Sequence[str]) -> list[CheckResult]:
    results: list[CheckResult] = []
    for name in sources:
        evaluator = CHECKS.get(name)
        if evaluator is not None:
            results.extend(evaluator(obs, config))
    return results
