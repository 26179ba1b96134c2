"""The Kubernetes reporter's own families (``kubernetes.report``): whether its conditions and
events reach the API server, so a missing RBAC rule or an unknown node name shows up in
Prometheus and not only in one log line.

What a person would type to see the same: ``kubectl describe node NODE`` (the conditions and
events that arrived) and the agent's log (``"event": "kube_error"``).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from netagent.state import KubeReportStatus

DROP_REASONS = ("rate_limited", "refused", "queue_full")


def families(status: KubeReportStatus) -> Iterable[Metric]:
    requests = CounterMetricFamily(
        "netagent_kubernetes_requests",
        "Requests the Kubernetes reporter sent, by operation (get_node, patch_node_status, "
        "create_event, patch_event) and HTTP status code (2xx: any success; none: no "
        "answer).",
        labels=["operation", "code"])
    for (operation, code), count in sorted(status.requests.items()):
        requests.add_metric([operation, code], count)
    dropped = CounterMetricFamily(
        "netagent_kubernetes_events_dropped",
        "Events not recorded on the Node: rate_limited (the per-reason token bucket), "
        "refused (the API refused them for good: 400, 403, 404, 409, 422), queue_full (the "
        "oldest queued while the API was unreachable).", labels=["reason"])
    for reason in DROP_REASONS:
        dropped.add_metric([reason], status.dropped.get(reason, 0))
    out: list[Metric] = [requests, dropped]
    if status.up is not None:
        up = GaugeMetricFamily(
            "netagent_kubernetes_report_up",
            "1 when the reporter's last attempt to reach the API server succeeded, 0 while "
            "it fails (conditions and events are not reaching the Node).")
        up.add_metric([], 1 if status.up else 0)
        out.append(up)
    return out
