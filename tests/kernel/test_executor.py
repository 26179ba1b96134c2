"""The executor against the real kernel, without changing anything global: outside the
initial network namespace the global limits are read-only or absent, and the executor says
so instead of raising."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labkit import conntrack, workers
from labkit.netlab import lab

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def ns() -> Iterator[str]:
    with lab("exe", pods=0) as the_lab:
        conntrack.track(the_lab.node)  # nf_conntrack loaded, its sysctls present
        yield the_lab.node


def write_in(ns: str, key: str, value: int) -> dict[str, Any]:
    proc = subprocess.run(["ip", "netns", "exec", ns, *workers.command(
        "write-sysctl", key, str(value))], env=ENV, capture_output=True, text=True,
        timeout=60, check=True)
    outcome: dict[str, Any] = json.loads(proc.stdout)
    return outcome


def test_nf_conntrack_max_is_read_only_outside_the_initial_namespace(ns: str) -> None:
    host = Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text().strip()
    outcome = write_in(ns, "net.netfilter.nf_conntrack_max", int(host) * 2)
    assert outcome["result"] == "failed"
    assert outcome["reason"].endswith("nf_conntrack_max: permission denied"), outcome
    assert outcome["before"] == int(host)  # global, and readable
    assert Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text().strip() == host


def test_the_neighbour_thresholds_do_not_exist_outside_the_initial_namespace(ns: str) -> None:
    outcome = write_in(ns, "net.ipv4.neigh.default.gc_thresh3", 4096)
    assert outcome["result"] == "failed"
    assert outcome["reason"].endswith("no such key on this kernel"), outcome
