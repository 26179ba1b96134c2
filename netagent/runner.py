"""One round of collection and checks: the heart of ``netagent check``.

Plan: a cheap baseline sample of every selected source, a pause of ``interval`` seconds, a
full collection, then the pure checks on both. Sources fail independently: a failure becomes
an ``unknown`` check and a source entry with the reason, never an exception.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from netagent.checks import registry
from netagent.config import Config
from netagent.errors import NetagentError
from netagent.model import Observations, Report, SourceRun
from netagent.sources import Source, run_source


def collect(
    sources: Mapping[str, Source],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], dict[str, str], list[SourceRun]]:
    """Full collection of each source, timed; returns (observations, errors, runs)."""
    current: dict[str, Any] = {}
    errors: dict[str, str] = {}
    runs: list[SourceRun] = []
    for name, source in sources.items():
        collected = run_source(name, source, clock=clock)
        if collected.run.ok:
            current[name] = collected.observation
        else:
            errors[name] = collected.run.error or "failed"
        runs.append(collected.run)
    return current, errors, runs


def baseline(sources: Mapping[str, Source]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, source in sources.items():
        # A failing sample is not reported: the full collection will say what is wrong.
        with contextlib.suppress(NetagentError, OSError):
            out[name] = source.sample()
    return out


def observe(
    sources: Mapping[str, Source],
    *,
    interval: float,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Observations, list[SourceRun]]:
    """A baseline sample, a pause of ``interval`` seconds, then a full collection."""
    before = baseline(sources) if interval > 0 else {}
    if interval > 0:
        (sleep or time.sleep)(interval)
    current, errors, runs = collect(sources, clock=clock)
    return Observations(current=current, baseline=before, errors=errors), runs


def check_once(
    sources: Mapping[str, Source],
    config: Config,
    *,
    interval: float,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    node: str | None = None,
) -> Report:
    obs, runs = observe(sources, interval=interval, sleep=sleep, clock=clock)
    checks = registry.evaluate(obs, config, sources=list(sources))
    return Report(
        node=node or os.environ.get("NODE_NAME") or socket.gethostname(),
        kernel=os.uname().release,
        checks=tuple(checks),
        sources=tuple(runs),
    )
