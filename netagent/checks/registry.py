"""Which checks judge which source: the ``checks`` of each entry in ``netagent.catalog``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netagent import catalog
from netagent.config import Config
from netagent.model import CheckResult, Observations

Judge = Callable[[Observations, Config], list[CheckResult]]


def judge_of(source: str) -> Judge:
    judge: Judge = catalog.resolve(catalog.BY_NAME[source].checks)
    return judge


def inputs(source: str) -> frozenset[str]:
    """The sources whose observations the checks of ``source`` read."""
    return catalog.inputs(source)


def evaluate(obs: Observations, config: Config, *, sources: Sequence[str]) -> list[CheckResult]:
    """The checks of each of ``sources``, in that order (sources the catalog does not know
    have none)."""
    results: list[CheckResult] = []
    for name in sources:
        if name in catalog.BY_NAME:
            results.extend(judge_of(name)(obs, config))
    return results
