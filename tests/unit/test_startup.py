"""Start-up imports only what the command needs: `--help` and `--version` no netlink, DNS or
HTTP library, and `check --only X` only source X's modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"pyroute2", "dns", "http.client", "prometheus_client", "scipy"}
SOURCE_MODULES = {"netagent.sources.neighbours", "netagent.sources.conntrack",
                  "netagent.sources.overlay", "netagent.sources.cluster",
                  "netagent.sources.dns"}


def imported(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-m", "tests.unit.imports_probe", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("IMPORTED "))
    return set(json.loads(line.removeprefix("IMPORTED ")))


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["check", "--help"],
                                  ["fleet", "--help"]])
def test_help_and_version_import_no_heavy_library(args: list[str]) -> None:
    modules = imported(*args)
    assert not modules & HEAVY, modules & HEAVY
    assert not modules & SOURCE_MODULES


def test_check_only_one_source_imports_only_that_source() -> None:
    modules = imported("check", "--only", "conntrack", "--interval", "0", "--json")
    assert "netagent.sources.conntrack" in modules and "netagent.checks.conntrack" in modules
    assert not modules & (SOURCE_MODULES - {"netagent.sources.conntrack"})
    assert not modules & {"dns", "http.client", "prometheus_client",
                          "netagent.checks.dns", "netagent.checks.overlay"}
