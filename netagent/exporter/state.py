"""What the collector reads: the agent's latest state, as one immutable record.

The agent replaces the whole record after each collection (one reference assignment, atomic
under the GIL), so a scrape running in the HTTP thread always sees a consistent round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netagent.model import CheckResult, SourceRun


@dataclass(frozen=True)
class SourceState:
    """One source as of its latest collection.

    ``observation`` is the record of the latest collection when it succeeded, else ``None``
    (a failed collection does not leave stale figures behind). ``totals`` is what the agent
    accumulated over every successful collection, for sources whose series count since
    start (DNS probes); it survives a failed collection, but is exported only while up.
    """

    name: str
    run: SourceRun
    observation: Any = None
    totals: Any = None

    @property
    def up(self) -> bool:
        return self.run.ok and self.observation is not None


@dataclass(frozen=True)
class AgentState:
    """Every source collected so far, and the checks evaluated after the latest collection."""

    sources: Mapping[str, SourceState] = field(default_factory=dict)
    checks: tuple[CheckResult, ...] = ()
