"""Starting ``netagent run`` (and Prometheus) as real processes, and always stopping them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.serve import free_port as free_port  # re-exported for the e2e tests

ROOT = Path(__file__).resolve().parents[2]


def http_get(url: str, *, timeout: float = 5) -> tuple[int, bytes]:
    """(status, body); (0, b"") when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def poll(what: str, probe: Any, *, timeout: float, every: float = 0.2) -> Any:
    """Call ``probe()`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def running(cmd: Sequence[str], *, log: Path, env: dict[str, str] | None = None
            ) -> Iterator[Process]:
    """Run ``cmd`` for the block; SIGTERM then SIGKILL it afterwards, whatever happened."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=str(ROOT))
    try:
        yield Process(proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def agent_command(port: int, config: Path | None = None,
                  log_format: str = "json") -> list[str]:
    cmd = [sys.executable, "-m", "netagent", "run", "--listen", f"127.0.0.1:{port}",
           "--log-format", log_format]
    if config is not None:
        cmd += ["--config", str(config)]
    return cmd


AGENT_ENV = {"PYTHONPATH": str(ROOT)}


# The agent runs in the host namespace here: its DNS probes go to loopback only (nothing
# listens on port 53 there, so they fail fast), never to the machine's own resolvers, and no
# node-local address is probed.
HOST_SAFE_DNS = ("dns:\n  resolvers: [127.0.0.1]\n  nodelocal_address: ''\n"
                 "  kubelet_config: /nonexistent/kubelet-config.yaml\n")


def fast_config(path: Path, *, every: float = 1.0) -> Path:
    """Every source collected each ``every`` seconds; DNS probes stay on loopback."""
    intervals = "\n".join(f"    {name}: {every}"
                          for name in ("neighbours", "conntrack", "overlay", "dns", "cluster"))
    path.write_text(f"agent:\n  jitter: 0.1\n  intervals:\n{intervals}\n{HOST_SAFE_DNS}")
    return path


def default_config(path: Path) -> Path:
    """The default schedule; DNS probes stay on loopback."""
    path.write_text(HOST_SAFE_DNS)
    return path


def prometheus_query(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, body = http_get(url)
    if status != 200:
        return []
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def prometheus_alerts(port: int) -> list[dict[str, Any]]:
    status, body = http_get(f"http://127.0.0.1:{port}/api/v1/alerts")
    if status != 200:
        return []
    alerts: list[dict[str, Any]] = json.loads(body)["data"]["alerts"]
    return alerts
