"""Shared test set-up.

Tests under tests/kernel and tests/e2e need root and a real kernel with network namespaces;
they are marked accordingly and skipped, with the reason printed, when not run as root.
``scripts/labkit`` (the lab) is importable as ``labkit``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT / "scripts"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "kernel" in parts:
            item.add_marker(pytest.mark.kernel)
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: kernel and e2e tests create network namespaces")
    for item in items:
        if "kernel" in item.keywords or "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
