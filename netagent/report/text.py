"""The terminal report: one line per check, details with ``-v``."""

from __future__ import annotations

from typing import Any

from netagent.model import Report, Status
from netagent.report.fixes import recommendation

_COLOURS = {
    Status.OK: "\033[32m",
    Status.WARNING: "\033[33m",
    Status.CRITICAL: "\033[31;1m",
    Status.UNKNOWN: "\033[35m",
}
_RESET = "\033[0m"


def coloured(text: str, status: Status) -> str:
    """``text`` in the status's terminal colour."""
    return f"{_COLOURS[status]}{text}{_RESET}"


def render(report: Report, *, verbose: bool = False, colour: bool = False) -> str:
    def tag(status: Status) -> str:
        text = f"{status.name:<8}"
        return coloured(text, status) if colour else text

    lines = [f"netagent check on {report.node} (kernel {report.kernel}): "
             f"{tag(report.status).strip()}"]
    width = max((len(c.id) for c in report.checks), default=0)
    for check in report.checks:
        lines.append(f"  {tag(check.status)} {check.id:<{width}}  {check.summary}")
        if verbose and check.evidence:
            for key, value in check.evidence.items():
                lines.append(f"      {key}: {_fmt(value)}")
        fix = recommendation(check)
        if fix and (verbose or check.status is not Status.OK):
            first, *rest = fix.splitlines()
            lines.append(f"      fix: {first}")
            lines.extend(f"           {line}" for line in rest)
    failed = [s for s in report.sources if not s.ok]
    if failed or verbose:
        lines.append("sources:")
        for s in report.sources:
            state = "ok" if s.ok else f"FAILED: {s.error}"
            lines.append(f"  {s.name:<11} {s.duration_seconds:.3f}s  {state}")
            if verbose and s.traceback:
                lines.extend(f"      {line}" for line in s.traceback.splitlines())
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if value is None:
        return "-"
    return str(value)
