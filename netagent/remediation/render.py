"""``netagent remediate``'s output: the plan, or the outcomes, as text and as JSON. Pure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from netagent.remediation.executor import Outcome
from netagent.remediation.plan import Plan


def as_dict(plan: Plan, outcomes: Sequence[Outcome] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "pending": plan.pending,
        "actions": [asdict(a) for a in plan.actions],
        "notrack": [asdict(n) for n in plan.notrack],
        "refusals": [asdict(r) for r in plan.refusals],
        "managed_elsewhere": [{"key": e.key, "why": e.why} for e in plan.elsewhere],
        "tables": [asdict(d) for d in plan.demands],
    }
    if outcomes is not None:
        doc["outcomes"] = [asdict(o) for o in outcomes]
    return doc


def as_json(plan: Plan, outcomes: Sequence[Outcome] | None = None) -> str:
    return json.dumps(as_dict(plan, outcomes), indent=2)


def text(plan: Plan, outcomes: Sequence[Outcome] | None = None, *, applied: bool) -> str:
    lines = []
    for d in plan.demands:
        state = "; the kernel is refusing entries" if d.refusing else ""
        lines.append(f"{d.table}: {d.count} of {d.limit} "
                     f"({d.count / d.limit:.0%} of the limit){state}" if d.limit else
                     f"{d.table}: {d.count}, no limit")
    if outcomes is not None:
        lines.append("done:" if applied else "outcomes:")
        for o in outcomes:
            change = f"{o.before} -> {o.after if o.after is not None else o.target}" \
                if o.before is not None else ""
            lines.append(f"  {o.result.upper():<8} {o.key} {change}"
                         + (f": {o.reason}" if o.reason else ""))
    else:
        if plan.actions or plan.notrack:
            lines.append("would change (netagent remediate --apply):")
        for a in plan.actions:
            lines.append(f"  {a.key}: {a.current} -> {a.target}  ({a.reason})")
        for n in plan.notrack:
            verb = "restore NOTRACK for" if n.add else "remove NOTRACK for"
            lines.append(f"  nftables table inet netagent: {verb} {n.address}  ({n.reason})")
        if not plan.pending:
            lines.append("nothing to change")
    if plan.refusals:
        lines.append("refused:")
        lines.extend(f"  {r.key}: {r.reason}" for r in plan.refusals)
    if plan.elsewhere:
        lines.append("managed elsewhere (left alone):")
        lines.extend(f"  {e.key}: {e.why}" for e in plan.elsewhere)
    return "\n".join(lines)
