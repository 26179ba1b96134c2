"""Busy neighbour demand for the remediation tests and benchmark, and the ramp figures.

``ramp`` adds entries to a lab node a batch at a time and moves all of them between
REACHABLE and STALE every second, so that forced GC (which frees only entries not updated
for 5 s) can free none: demand the kernel must hold. ``bench`` runs the same ramp twice on
the global IPv4 table, without netagent (the baseline: the kernel's refusals) and with
``netagent run --remediate``, and returns the figures ``scripts/bench --remediation``
prints. Every sysctl is restored afterwards and the lab removed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from labkit.netlab import Lab, sysctls, table_fulls
from labkit.serve import serving

ROOT = Path(__file__).resolve().parents[2]
PROC = Path("/proc/sys/net/ipv4/neigh/default")
DEFAULTS = {f"net.ipv4.neigh.default.gc_thresh{k}": v
            for k, v in (("1", "128"), ("2", "512"), ("3", "1024"))}
Row = tuple[str, str, str, bool | None]


def gc3() -> int:
    return int((PROC / "gc_thresh3").read_text())


def ramp(lab: Lab, total: int, *, per_step: int = 100, every: float = 0.2,
         stop: threading.Event | None = None,
         progress: Callable[[int], None] | None = None) -> None:
    """Add ``total`` busy entries, ``per_step`` every ``every`` seconds (at most 120 s)."""
    added, last_touch, state = 0, 0.0, "reachable"
    deadline = time.monotonic() + 120
    while added < total and time.monotonic() < deadline and not (stop and stop.is_set()):
        lab.add_neighbours(min(per_step, total - added), state="stale", start=added)
        added = min(total, added + per_step)
        if progress:
            progress(added)
        if time.monotonic() - last_touch > 1.0:
            lab.touch_neighbours(added, state=state)
            state = "stale" if state == "reachable" else "reachable"
            last_touch = time.monotonic()
        time.sleep(every)


def _agent(config: Path, port: int) -> contextlib.AbstractContextManager[
        subprocess.Popen[bytes]]:
    return serving([sys.executable, "-m", "netagent", "run", "--listen", f"127.0.0.1:{port}",
                    "--config", str(config), "--remediate"],
                   ready_url=f"http://127.0.0.1:{port}/readyz", cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})


def bench(total: int = 5 * 1024 + 300, *, interval: float = 1.0, port: int = 19466) -> list[Row]:
    trigger = 0.70
    rows: list[Row] = []
    with sysctls(DEFAULTS):
        lab = Lab("brem")
        try:
            lab.up(pods=1)
            before = table_fulls()
            ramp(lab, total)
            baseline = table_fulls() - before
            held = lab.count_neighbours()
        finally:
            lab.down()
    with sysctls(DEFAULTS), tempfile.TemporaryDirectory(prefix="netagent-bench-") as tmp:
        config = Path(tmp, "netagent.yaml")
        config.write_text(
            f"agent:\n  jitter: 0\n  intervals:\n    neighbours: {interval}\n"
            "    conntrack: 3600\n    overlay: 3600\n    cluster: 3600\n    dns: 3600\n"
            "dns:\n  resolvers: [127.0.0.1]\n  nodelocal_address: ''\n"
            "  kubelet_config: /nonexistent/kubelet-config.yaml\n"
            f"remediation:\n  persist_dir: {tmp}\n  state_dir: {tmp}/state\n"
            f"  sysctl_conf: {tmp}/sysctl.conf\n  cooldown_seconds: 1\n"
            f"  trigger_ratio: {trigger}\n")
        lab = Lab("brem")
        counts: list[tuple[float, int]] = []
        limits: list[tuple[float, int]] = []
        try:
            lab.up(pods=1)
            start3 = gc3()
            with _agent(config, port):
                stop = threading.Event()

                def watch() -> None:
                    while not stop.is_set():  # bounded by the ramp
                        limits.append((time.monotonic(), gc3()))
                        time.sleep(0.01)

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                before = table_fulls()
                try:
                    ramp(lab, total, progress=lambda n: counts.append((time.monotonic(), n)))
                    time.sleep(interval + 0.5)
                finally:
                    stop.set()
                    watcher.join(timeout=5)
                fulls = table_fulls() - before
            end3 = gc3()
        finally:
            lab.down()
    raises = [(t, b) for (_, a), (t, b) in itertools.pairwise(limits) if b > a]
    # from the moment the demand crossed the trigger of the limit then in force to the write
    latencies, limit = [], start3
    for t_write, new in raises:
        crossed = next((t for t, n in counts if n >= trigger * limit), None)
        if crossed is not None:
            latencies.append(max(0.0, t_write - crossed))
        limit = new
    worst = max(latencies, default=float("nan"))
    rows.append((f"ramp to {total} busy entries, baseline without netagent",
                 f"table_fulls +{baseline}, {held} entries held", "", None))
    rows.append(("with netagent run --remediate: demand peak", str(total), "", None))
    rows.append(("gc_thresh3 at the start -> at the end", f"{start3} -> {end3}",
                 f"> {total}", end3 > total))
    rows.append(("raises", str(len(raises)), "", None))
    rows.append(("table_fulls during the ramp", str(fulls), "0", fulls == 0))
    rows.append((f"trigger crossed -> write, worst of {len(latencies)}", f"{worst:.2f} s",
                 f"<= {interval:g} s (one interval)", worst <= interval))
    return rows
