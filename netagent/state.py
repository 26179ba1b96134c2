"""The agent's state, as one immutable record, and what changed between two of them.

The agent replaces the whole record after each collection (one reference assignment, atomic
under the GIL), so a scrape running in the HTTP thread, or any other consumer, always sees a
consistent round. Consumers are told of each new state with the transitions that led to it
(``Update``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netagent.model import CheckResult, Forecast, SourceRun, Status


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
    baseline: Any = None  # the successful observation before the latest one, for rates

    @property
    def up(self) -> bool:
        return self.run.ok and self.observation is not None


@dataclass(frozen=True)
class AgentState:
    """Every source collected so far, the checks evaluated after the latest collection, and
    each table's forecast (``netagent.forecast``) as of its latest sample."""

    sources: Mapping[str, SourceState] = field(default_factory=dict)
    checks: tuple[CheckResult, ...] = ()
    forecasts: Mapping[str, Forecast] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceTransition:
    """A source went up or down (``before`` is None at its first collection)."""

    before: SourceRun | None
    after: SourceRun


@dataclass(frozen=True)
class CheckTransition:
    """A check changed status (``before`` is None when it first appears)."""

    before: Status | None
    after: CheckResult


Transition = SourceTransition | CheckTransition


@dataclass(frozen=True)
class Update:
    """A new state and the transitions since the previous update a consumer was given."""

    state: AgentState
    transitions: tuple[Transition, ...] = ()


@dataclass(frozen=True)
class RemediationStatus:
    """What remediation exports: its mode, its actions so far, which keys it manages, the
    values of every key it may manage, and the keys at their ceiling."""

    mode: str
    actions: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (key, result)
    managed: Mapping[str, bool] = field(default_factory=dict)
    values: Mapping[str, int | None] = field(default_factory=dict)
    at_ceiling: frozenset[str] = frozenset()


@dataclass(frozen=True)
class KubeReportStatus:
    """What the Kubernetes reporter exports: its requests by operation and HTTP status
    ("2xx" for any success, "none" when no answer came), the events it dropped by why, and
    whether the API took its last attempt (None before the first)."""

    requests: Mapping[tuple[str, str], int] = field(default_factory=dict)
    dropped: Mapping[str, int] = field(default_factory=dict)
    up: bool | None = None
