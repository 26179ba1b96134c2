"""The ``--json`` contract (docs/design.md §3): one object, stable keys."""

from __future__ import annotations

import json
from typing import Any

from netagent.model import CheckResult, Report
from netagent.report import fixes


def to_dict(report: Report) -> dict[str, Any]:
    return {
        "node": report.node,
        "kernel": report.kernel,
        "status": report.status.label,
        "checks": [_check(c) for c in report.checks],
        "sources": [
            {"name": s.name, "ok": s.ok, "duration_seconds": s.duration_seconds,
             "error": s.error}
            for s in report.sources
        ],
    }


def _check(check: CheckResult) -> dict[str, Any]:
    return {
        "id": check.id,
        "status": check.status.label,
        "summary": check.summary,
        "observed": check.observed,
        "limit": check.limit,
        "recommendation": fixes.recommendation(check),
        "changes": fixes.changes(check),
        "evidence": dict(check.evidence),
    }


def render(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, sort_keys=False, default=str)
