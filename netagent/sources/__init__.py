"""Sources: the only code that touches the system.

Each source reads one area (neighbour tables, conntrack, overlay devices, the cluster, DNS)
and returns records from ``netagent.model``. Roots (``/proc``, ``/run/netns``), sockets,
clocks and HTTP clients come in through constructors so tests can point them elsewhere.
A source raises ``SourceError`` when it can read nothing at all; partial failures are
recorded in the returned records (``problems``) so checks can say ``unknown`` and why.
Nothing here decides whether a value is good or bad: that is ``netagent.checks``.
"""

from __future__ import annotations

from typing import Any, Protocol


class Source(Protocol):
    """What the check runner and the daemon need from a source."""

    name: str

    def sample(self) -> Any:
        """A cheap reading of the source's counters, used as the baseline for rates."""

    def collect(self) -> Any:
        """A full observation."""
