"""Sources: the only code that touches the system.

Each source reads one area (neighbour tables, conntrack, overlay devices, the cluster, DNS)
and returns records from ``netagent.model``. Roots (``/proc``, ``/run/netns``), sockets,
clocks and HTTP clients come in through constructors so tests can point them elsewhere.
A source raises ``SourceError`` when it can read nothing at all; partial failures are
recorded in the returned records (``problems``) so checks can say ``unknown`` and why.
Nothing here decides whether a value is good or bad: that is ``netagent.checks``.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from netagent.errors import NetagentError
from netagent.model import SourceRun


class Source(Protocol):
    """What the check runner and the daemon need from a source."""

    name: str

    def sample(self) -> Any:
        """A cheap reading of the source's counters, used as the baseline for rates."""

    def collect(self) -> Any:
        """A full observation."""


@dataclass(frozen=True)
class Collected:
    """One collection: how it went, the observation when it succeeded, and the exception
    when it was a bug (not a ``NetagentError`` or an ``OSError``), for its traceback."""

    run: SourceRun
    observation: Any = None
    bug: BaseException | None = None


def run_source(name: str, source: Source, *,
               clock: Callable[[], float] = time.monotonic) -> Collected:
    """Collect ``source`` once, timed. Every exception, a bug included, becomes a failed
    ``SourceRun`` with the reason: ``netagent check`` and the agent both collect here, so
    one source's bug makes its checks unknown and nothing else."""
    start = clock()
    try:
        observation = source.collect()
    except Exception as err:
        reason = str(err) or type(err).__name__
        expected = isinstance(err, NetagentError | OSError)
        if isinstance(err, OSError) and not isinstance(err, NetagentError):
            reason = f"{type(err).__name__}: {reason}"
        if not expected:
            reason = f"unexpected {type(err).__name__}: {reason}"
        run = SourceRun(name=name, ok=False, duration_seconds=round(clock() - start, 6),
                        error=reason,
                        traceback=None if expected else "".join(
                            traceback.format_exception(err)).rstrip())
        return Collected(run, None, None if expected else err)
    return Collected(SourceRun(name=name, ok=True,
                               duration_seconds=round(clock() - start, 6)), observation)


def program(name: str) -> str:
    """The path of a system program: on PATH, else in the sbin directories (a DaemonSet's or
    a cron job's PATH often lacks them); the bare name when nowhere, so that running it
    fails with FileNotFoundError and the caller says it is missing."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return name
