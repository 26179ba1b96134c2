"""Which checks read which source."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netagent.checks import conntrack, dns, neighbours, overlay
from netagent.config import Config
from netagent.model import CheckResult, ClusterInfo, Observations

Evaluator = Callable[[Observations, Config], list[CheckResult]]

# source name -> the checks that judge it, in report order
CHECKS: dict[str, Evaluator] = {
    "neighbours": lambda obs, cfg: neighbours.evaluate(obs, cfg.thresholds.neighbour,
                                                       nodes=cluster_nodes(obs, cfg)),
    "conntrack": lambda obs, cfg: conntrack.evaluate(obs, cfg.thresholds.conntrack),
    "overlay": overlay.evaluate,
    "cluster": overlay.evaluate_cluster,
    "dns": lambda obs, cfg: dns.evaluate(obs, cfg.thresholds.dns),
}


# source -> every source whose observation its checks read (besides its own)
READS_ALSO: dict[str, frozenset[str]] = {
    "neighbours": frozenset({"cluster"}),  # capacity from the node count
    "overlay": frozenset({"cluster"}),  # expected peers
    "dns": frozenset({"conntrack"}),  # insert_failed growth in the same round
    "cluster": frozenset({"overlay"}),  # a cluster check of its own only without overlay
}


def inputs(source: str) -> frozenset[str]:
    """The sources whose observations the checks of ``source`` read."""
    return READS_ALSO.get(source, frozenset()) | {source}


def cluster_nodes(obs: Observations, config: Config) -> int | None:
    """The cluster's node count: the ``cluster`` source's reading when it ran (the API, or
    the configuration when the API could not be read), else ``nodes:``/``--nodes``."""
    info = obs.get("cluster", ClusterInfo)
    return info.nodes if info is not None else config.nodes


def evaluate(obs: Observations, config: Config, *, sources: Sequence[str]) -> list[CheckResult]:
    results: list[CheckResult] = []
    for name in sources:
        evaluator = CHECKS.get(name)
        if evaluator is not None:
            results.extend(evaluator(obs, config))
    return results
