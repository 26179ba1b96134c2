"""Running netagent the way a person does, against the real kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


# Root's user id without a single capability: what an unprivileged user may do with
# namespaces and /proc (no setns, no ptrace-protected links), while the interpreter under
# /root stays readable.
UNPRIVILEGED = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]


def netagent(args: Sequence[str], *, netns: str | None = None, timeout: float = 120,
             unprivileged: bool = False,
             env: dict[str, str] | None = None) -> tuple[int, dict[str, Any] | str, str]:
    """Run ``python -m netagent ARGS`` (inside ``netns`` when given).

    Returns (exit code, parsed JSON when ``--json`` was given else stdout, stderr).
    """
    cmd = [sys.executable, "-m", "netagent", *args]
    if unprivileged:
        cmd = UNPRIVILEGED + cmd
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd="/")
    out: dict[str, Any] | str = proc.stdout
    if "--json" in args and proc.stdout.strip():
        out = json.loads(proc.stdout)
    return proc.returncode, out, proc.stderr


def check(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    for item in report["checks"]:
        if item["id"] == check_id:
            return item
    raise AssertionError(f"no check {check_id} in {[c['id'] for c in report['checks']]}")
