"""What netagent tells Kubernetes, as data: its four node conditions, the strategic-merge
patch that sets them, events, and the two filters events pass (client-go's way). Pure.

netagent owns four condition types on its Node, one per group of checks (docs/design.md
§4.8, README "Kubernetes reporting"): ``status`` is True when the worst check of the group is
warning or critical, False when all are ok, Unknown when the worst is unknown. The patch
carries only these types: ``status.conditions`` merges by ``type`` under a strategic-merge
patch, so the kubelet's own conditions (Ready, MemoryPressure, ...) are never touched.
"""

from __future__ import annotations

import datetime
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netagent.model import CheckResult, Status

# condition type -> (the group: a check id's first part, reason when every check is ok).
# By first part, not by "overlay." alone: with no VXLAN device, or its source down, the
# overlay verdict is the single check "overlay", and the condition must follow it rather
# than stay as it was last sent.
CONDITIONS: Mapping[str, tuple[str, str]] = {
    "NeighbourTablePressure": ("neighbour", "NeighbourTablesOK"),
    "ConntrackTablePressure": ("conntrack", "ConntrackOK"),
    "OverlayPeersMissing": ("overlay", "OverlayPeersPresent"),
    "DNSDegraded": ("dns", "DNSHealthy"),
}
MAX_MESSAGE = 1024
_WORDS = {"ipv4": "IPv4", "ipv6": "IPv6", "dns": "DNS", "nodelocal": "NodeLocal",
          "tcp": "TCP", "udp": "UDP"}
_STATUS_WORD = {Status.OK: "OK", Status.WARNING: "Warning", Status.CRITICAL: "Critical",
                Status.UNKNOWN: "Unknown"}


def camel(check_id: str) -> str:
    """``neighbour.ipv4`` -> ``NeighbourIPv4``; ``overlay.flannel.1`` -> ``OverlayFlannel1``."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", check_id) if p]
    return "".join(_WORDS.get(p.lower(), p[:1].upper() + p[1:]) for p in parts)


def check_reason(check: CheckResult) -> str:
    """An event's or a condition's reason for one check: ``NeighbourIPv4Warning``."""
    return camel(check.id) + _STATUS_WORD[check.status]


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


def desired(checks: Iterable[CheckResult]) -> dict[str, Condition]:
    """netagent's conditions for these checks; a group with no check has none."""
    out = {}
    checks = list(checks)
    for ctype, (name, ok_reason) in CONDITIONS.items():
        group = [c for c in checks if c.id.split(".", 1)[0] == name]
        if not group:
            continue
        worst_status = Status.worst([c.status for c in group])
        worst = next(c for c in group if c.status is worst_status)
        if worst_status is Status.OK:
            status, reason = "False", ok_reason
            message = " | ".join(c.summary for c in group)
        else:
            status = "Unknown" if worst_status is Status.UNKNOWN else "True"
            reason, message = check_reason(worst), worst.summary
        out[ctype] = Condition(ctype, status, reason, _one_line(message))
    return out


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def timestamp(wall: float) -> str:
    """RFC 3339 in seconds, as metav1.Time is written."""
    return datetime.datetime.fromtimestamp(int(wall), datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def status_patch(conditions: Sequence[Condition], *, now: float,
                 transitions: Mapping[str, str]) -> dict[str, Any]:
    """The strategic-merge patch of ``/api/v1/nodes/<name>/status`` that sets
    ``conditions`` and nothing else; ``transitions`` holds each type's lastTransitionTime."""
    beat = timestamp(now)
    return {"status": {"conditions": [
        {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
         "lastHeartbeatTime": beat, "lastTransitionTime": transitions.get(c.type, beat)}
        for c in conditions]}}


def existing(node: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """netagent's conditions already on a Node: type -> (status, lastTransitionTime)."""
    out = {}
    conditions = (node.get("status") or {}).get("conditions") or []
    for c in conditions if isinstance(conditions, list) else ():
        if isinstance(c, dict) and c.get("type") in CONDITIONS and isinstance(
                c.get("status"), str):
            out[c["type"]] = (c["status"], str(c.get("lastTransitionTime") or ""))
    return out


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One event to record on the Node: ``Warning`` for bad news, ``Normal`` otherwise."""

    reason: str
    message: str
    type: str  # "Normal" | "Warning"


def check_event(check: CheckResult, before: Status | None) -> Event | None:
    """The event for a check's status change; a check's first verdict is news only when it
    is bad (a restart of every agent must not post thousands of "ok" events)."""
    if before is check.status or (before is None and check.status is Status.OK):
        return None
    kind = "Normal" if check.status is Status.OK else "Warning"
    was = before.label if before is not None else "none"
    return Event(check_reason(check), _one_line(
        f"{check.id} {was} -> {check.status.label}: {check.summary}"), kind)


def action_event(key: str, result: str, message: str) -> Event:
    """The event for one remediation outcome: applied, failed, refused."""
    reason = {"applied": "RemediationApplied", "failed": "RemediationFailed"}.get(
        result, "RemediationRefused")
    return Event(reason, _one_line(f"{key}: {message}"),
                 "Normal" if result == "applied" else "Warning")


def event_body(event: Event, *, name: str, namespace: str, node: str, uid: str,
               now: float) -> dict[str, Any]:
    """A core/v1 Event on the Node, as the kubelet writes its own."""
    ts = timestamp(now)
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid},
        "reason": event.reason, "message": event.message, "type": event.type,
        "source": {"component": "netagent", "host": node},
        "reportingComponent": "netagent", "reportingInstance": node,
        "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
    }


class TokenBuckets:
    """A token bucket per key (reason and object): ``burst`` events at once, then one per
    ``refill_seconds`` (client-go's EventSourceObjectSpamFilter: 25, then one per 5 min).
    Bounded: the least recently used keys are forgotten beyond ``max_keys``."""

    def __init__(self, *, burst: int, refill_seconds: float, max_keys: int = 4096) -> None:
        self.burst, self.refill, self.max_keys = burst, refill_seconds, max_keys
        self._buckets: OrderedDict[Any, tuple[float, float]] = OrderedDict()

    def allow(self, key: Any, now: float) -> bool:
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) / self.refill)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed


@dataclass(frozen=True)
class Recorded:
    name: str
    count: int


class EventCache:
    """Events already recorded, by (reason, message, type): a repeat bumps ``count`` and
    ``lastTimestamp`` of the recorded one instead of creating another (client-go's
    EventLogger). Least recently used first out beyond ``max_events``."""

    def __init__(self, max_events: int = 1024) -> None:
        self.max_events = max_events
        self._events: OrderedDict[Event, Recorded] = OrderedDict()

    def get(self, event: Event) -> Recorded | None:
        return self._events.get(event)

    def put(self, event: Event, recorded: Recorded) -> None:
        self._events.pop(event, None)
        self._events[event] = recorded
        while len(self._events) > self.max_events:
            self._events.popitem(last=False)

    def forget(self, event: Event) -> None:
        self._events.pop(event, None)
