"""The forecast on the real kernel: busy neighbour demand ramping in a lab namespace, with
``netagent run`` collecting every 0.5 s (the thresholds scaled to the ramp's length).

The ramp fills the global IPv4 table of the initial namespace (gc_thresh3 1,024, restored
afterwards) for about half a minute; the lab and the agent are removed whatever happens.
"""

from __future__ import annotations

import datetime
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit.netlab import Lab, sysctls, table_fulls
from labkit.remediation import ramp

from tests.e2e.daemon import AGENT_ENV, free_port, http_get, poll, running

V4 = "net.ipv4.neigh.default.gc_thresh"
DEFAULTS = {f"{V4}1": "128", f"{V4}2": "512", f"{V4}3": "1024"}
INTERVAL = 0.5


@pytest.fixture
def lab() -> Iterator[Lab]:
    the_lab = Lab("fc")
    with sysctls(DEFAULTS):
        try:
            yield the_lab.up(pods=1)
        finally:
            the_lab.down()


def config(tmp_path: Path) -> Path:
    """A ramp of ~30 s stands for one of hours: the forecast's times scaled alike."""
    path = tmp_path / "netagent.yaml"
    path.write_text(
        f"agent:\n  jitter: 0\n  intervals:\n    neighbours: {INTERVAL}\n    conntrack: 3600\n"
        "    overlay: 3600\n    cluster: 3600\n    dns: 3600\n"
        "dns:\n  resolvers: [127.0.0.1]\n  nodelocal_address: ''\n"
        "  kubelet_config: /nonexistent/kubelet-config.yaml\n"
        "forecast:\n  warning_seconds: 40\n  critical_seconds: 10\n  window_seconds: 120\n"
        "  min_samples: 6\n")
    return path


def transitions(log: str) -> list[tuple[float, str]]:
    """(wall time, new status) of each neighbour.ipv4 check transition in the JSON log."""
    out = []
    for line in log.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "check_status" and event.get("check") == "neighbour.ipv4":
            when = datetime.datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
            out.append((when.replace(tzinfo=datetime.UTC).timestamp(), event["to"]))
    return out


def entries() -> int:
    """The IPv4 table's global entry count (the stat file's first column, in hex)."""
    return int(Path("/proc/net/stat/arp_cache").read_text().split("\n")[1].split()[0], 16)


class Ramp:
    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.fulls: list[tuple[float, int, int]] = []  # (time, table_fulls, entries)
        self.seen: list[tuple[float, str]] = []

    @property
    def drop(self) -> float | None:
        first = self.fulls[0][1] if self.fulls else 0
        return next((t for t, n, _ in self.fulls if n > first), None)

    def crossed(self, count: int) -> float | None:
        return next((t for t, _, n in self.fulls if n > count), None)


def run_ramp(lab: Lab, tmp_path: Path, total: int, *, per_step: int, after: float) -> Ramp:
    """The ramp's start and end, the kernel's counters during it, the check's transitions."""
    port = free_port()
    out = Ramp()
    with running([sys.executable, "-m", "netagent", "run", "--listen", f"127.0.0.1:{port}",
                  "--config", str(config(tmp_path)), "--log-format", "json"],
                 log=tmp_path / "agent.log", env=AGENT_ENV) as proc:
        poll("agent ready", lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
             timeout=30)
        time.sleep(4 * INTERVAL)  # a few samples of the empty table
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():  # bounded by the ramp below
                out.fulls.append((time.time(), table_fulls(), entries()))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        out.start = time.time()
        watcher.start()
        try:
            ramp(lab, total, per_step=per_step, every=0.2)
            out.end = time.time()
            time.sleep(after)
        finally:
            stop.set()
            watcher.join(timeout=5)
        out.seen = transitions(proc.output())
    return out


def test_the_first_warning_comes_well_before_the_kernel_refuses_entries(
        lab: Lab, tmp_path: Path) -> None:
    r = run_ramp(lab, tmp_path, 1024 + 200, per_step=8, after=1.0)
    drop = r.drop
    assert drop is not None, "the ramp never filled the table"
    warned = next((t for t, status in r.seen if status in ("warning", "critical")), None)
    assert warned is not None, r.seen
    lead, to_drop = drop - warned, drop - r.start
    # at least 60% of the time from the ramp's start to the first drop
    assert lead >= 0.6 * to_drop, (f"warned {warned - r.start:.1f} s into a ramp that "
                                   f"dropped at {to_drop:.1f} s (lead {lead:.1f} s)", r.seen)
    # the baseline in the same run: the ratio rules alone warn above gc_thresh2 (512)
    ratio_rule = r.crossed(512)
    baseline = f"{drop - ratio_rule:.1f} s" if ratio_rule else "none"
    print(f"first warning {lead:.1f} s before the first table_fulls, "
          f"{lead / to_drop:.0%} of the {to_drop:.1f} s to it; the ratio rules alone: "
          f"{baseline}")


def test_a_ramp_that_stops_at_40_percent_raises_no_critical_and_clears(
        lab: Lab, tmp_path: Path) -> None:
    r = run_ramp(lab, tmp_path, 410, per_step=8, after=6 * INTERVAL + 1.0)
    end, seen = r.end, r.seen
    assert r.drop is None
    assert all(status != "critical" for _, status in seen), seen
    assert seen and seen[-1][1] == "ok", seen
    # the ramp is fast enough for the scaled forecast to warn on its way up (so the clearing
    # below is exercised, not skipped)
    assert any(status == "warning" for _, status in seen), seen
    cleared = seen[-1][0]
    # five collections after the demand stopped (plus one for the last step's sample)
    assert cleared - end <= 6 * INTERVAL + 0.5, (cleared - end, seen)
    print(f"warning cleared {cleared - end:.1f} s after the demand stopped")
