"""What a per-source exporter module may read besides its own observation: the whole state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from netagent.config import Config
from netagent.model import Observations
from netagent.state import AgentState

T = TypeVar("T")


@dataclass(frozen=True)
class Scrape:
    state: AgentState
    config: Config

    def totals(self, source: str) -> Any:
        """The running totals the agent keeps for ``source`` (the catalog's ``totals``)."""
        state = self.state.sources.get(source)
        return state.totals if state is not None else None

    def observations(self) -> Observations:
        """The latest successful observation of every source, as the checks saw them."""
        return Observations(
            current={n: s.observation for n, s in self.state.sources.items() if s.up},
            errors={n: s.run.error or "failed" for n, s in self.state.sources.items()
                    if not s.up})


def expect(obs: Any, kind: type[T]) -> T:
    if not isinstance(obs, kind):
        raise TypeError(f"expected a {kind.__name__}, got {type(obs).__name__}")
    return obs
