"""netagent's conntrack readings inside a lab namespace, against conntrack(8) in the same one.

Every test gets a fresh namespace (lab ``ctk``) whose table only its own loopback traffic
fills, so the kernel counters start at 0 and only move when the test moves them. The one
global change, ``nf_conntrack_max`` lowered for well under a second, goes through
``sysctls()``, which restores it even on failure.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labkit import conntrack, workers
from labkit.netlab import lab, sysctls

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CONTRACT_KEYS = {"id", "status", "summary", "observed", "limit", "recommendation"}
EXIT = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}


@pytest.fixture
def ns() -> Iterator[str]:
    with lab("ctk", pods=0) as the_lab:
        conntrack.track(the_lab.node)
        yield the_lab.node


def _check_json(ns: str, *args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "netagent", "check", "--json",
         "--only", "conntrack", *args],
        env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


class SyncedCheck:
    """``netagent check`` (the runner) inside ``ns``, paused after its baseline sample."""

    def __init__(self, ns: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *workers.command("synced-check")],
            env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

    def __enter__(self) -> SyncedCheck:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "baseline taken":
            self.proc.kill()
            raise AssertionError(f"check did not start: {line!r} "
                                 f"{self.proc.stderr.read() if self.proc.stderr else ''}")
        return self

    def finish(self) -> dict[str, Any]:
        out, err = self.proc.communicate("go\n", timeout=60)
        assert self.proc.returncode == 0, err
        result: dict[str, Any] = json.loads(out)
        return result

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def test_count_and_stats_match_conntrack_tools(ns: str) -> None:
    sent, refused = conntrack.udp_flows(ns, 500)
    assert (sent, refused) == (500, 0)
    rc, report = _check_json(ns, "--interval", "0")
    tool_count, tool_stats = conntrack.count(ns), conntrack.stats(ns)

    assert rc == EXIT[report["status"]]
    assert report["sources"] == [{"name": "conntrack", "ok": True, "error": None,
                                  "duration_seconds": report["sources"][0]["duration_seconds"]}]
    checks = _checks(report)
    assert set(checks) == {"conntrack.table", "conntrack.errors"}
    for check in checks.values():
        assert set(check) >= CONTRACT_KEYS
        assert check["status"] in EXIT

    table = checks["conntrack.table"]
    # 500 unreplied UDP entries live 30 s; only a late expiry could move the count
    assert 500 <= table["observed"] <= 505
    assert abs(table["observed"] - tool_count) <= 2
    assert table["limit"] == int(Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text())
    assert table["evidence"]["stats_source"] == "procfs"

    errors = checks["conntrack.errors"]
    assert errors["evidence"]["per_second"] is None  # --interval 0: no baseline
    assert "rates unknown" in errors["summary"]
    # nothing moves these counters between the two readings: exact
    for name, value in errors["evidence"]["since_boot"].items():
        assert tool_stats[name] == value, name


def test_rates_over_an_interval_from_the_cli(ns: str) -> None:
    conntrack.udp_flows(ns, 50)
    rc, report = _check_json(ns, "--interval", "0.3")
    errors = _checks(report)["conntrack.errors"]
    assert errors["status"] == "ok" and rc == 0
    assert errors["evidence"]["interval_seconds"] >= 0.3
    assert errors["evidence"]["deltas"]["drop"] == 0
    assert errors["observed"] == {"drop": 0.0, "early_drop": 0.0, "insert_failed": 0.0}


def test_netlink_and_procfs_agree_with_conntrack_s(ns: str) -> None:
    conntrack.udp_flows(ns, 100)
    conntrack.insertion_races(ns, "udp", 500, within=10)
    proc = subprocess.run(["ip", "netns", "exec", ns, *workers.command("conntrack-both-paths")],
                          env=ENV, capture_output=True, text=True, timeout=60, check=True)
    both = json.loads(proc.stdout)
    tool = conntrack.stats(ns)
    assert both["netlink"] == tool
    for name, value in both["netlink"].items():
        assert both["procfs"][name] == value, name
    assert both["entries"] == both["count"]


def test_full_table_drops_are_critical_and_counted_exactly(ns: str) -> None:
    burst = 20
    with conntrack.TcpHolder(ns, 50) as holder:
        assert holder.ready == 50
        full_at = conntrack.count(ns)
        assert full_at == 50
        with SyncedCheck(ns) as check:
            start = time.monotonic()
            with sysctls({"net.netfilter.nf_conntrack_max": str(full_at)}):
                sent, refused = conntrack.udp_flows(ns, burst, within=5)
            assert time.monotonic() - start < 10
            assert (sent, refused) == (0, burst)
            report = check.finish()
        tool_stats, tool_count = conntrack.stats(ns), conntrack.count(ns)

    checks = _checks(report)
    errors, table = checks["conntrack.errors"], checks["conntrack.table"]
    assert report["status"] == "critical"
    assert errors["status"] == "critical"
    assert errors["evidence"]["deltas"]["drop"] == burst
    assert errors["evidence"]["since_boot"]["drop"] == tool_stats["drop"] == burst
    assert errors["evidence"]["per_second"]["drop"] > 0
    assert "table full" in errors["evidence"]["likely_cause"]
    # collected after the limit was restored: the held connections are all that is left
    assert table["observed"] == tool_count == full_at
    assert table["status"] == "ok"


def test_insertion_races_show_as_insert_failed_and_clash_resolve(ns: str) -> None:
    with SyncedCheck(ns) as check:
        deadline = time.monotonic() + 60
        tool: dict[str, int] = {}
        # the race needs two CPUs and luck: a few bounded rounds until both counters move
        while time.monotonic() < deadline:
            conntrack.insertion_races(ns, "tcp", 2000, within=10)
            conntrack.insertion_races(ns, "udp", 2000, within=10)
            tool = conntrack.stats(ns)
            if tool["insert_failed"] and tool["clash_resolve"]:
                break
        report = check.finish()
    if not (tool.get("insert_failed") and tool.get("clash_resolve")):
        pytest.skip(f"no insertion race won in 60 s on {os.cpu_count()} CPUs: {tool}")

    errors = _checks(report)["conntrack.errors"]
    evidence = errors["evidence"]
    for name in ("insert_failed", "clash_resolve", "drop"):
        # a fresh namespace starts at 0, so what rose during the check is everything
        assert evidence["deltas"][name] == evidence["since_boot"][name] == tool[name], name
    # TCP clashes cannot be merged: the losing SYN is dropped, so this is critical
    assert evidence["deltas"]["drop"] == evidence["deltas"]["insert_failed"]
    assert errors["status"] == "critical"
    assert "insertion race" in evidence["likely_cause"]
    assert "single-request-reopen" in errors["recommendation"]


def test_netlink_without_cap_net_admin_says_so(ns: str) -> None:
    # setpriv drops CAP_NET_ADMIN for the child even though it runs as root
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "setpriv", "--bounding-set", "-net_admin",
         "--inh-caps", "-net_admin", "--", *workers.command("conntrack-netlink")],
        env=ENV, capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split(maxsplit=2) == [
        "True", "True", "conntrack statistics over netlink need CAP_NET_ADMIN\n"]
