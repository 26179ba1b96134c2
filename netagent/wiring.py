"""Builds the sources from the configuration, as the catalog says (``netagent.catalog``)."""

from __future__ import annotations

from collections.abc import Sequence

from netagent import catalog
from netagent.config import Config
from netagent.sources import Source

SOURCE_NAMES = catalog.SOURCE_NAMES


def build_sources(config: Config, *, only: Sequence[str] = ()) -> dict[str, Source]:
    """The sources wanted (every one without ``only``), in the catalog's order; only their
    modules are imported."""
    wanted = [n for n in SOURCE_NAMES if not only or n in only]
    return {name: catalog.resolve(catalog.BY_NAME[name].build)(config, wanted)
            for name in wanted}
