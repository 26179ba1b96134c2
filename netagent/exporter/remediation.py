"""Remediation's families (``netagent run --remediate`` or ``remediation.mode``).

What a person would type to see the same: ``netagent remediate`` (the plan) and
``cat /var/lib/netagent/journal.json`` (what was done).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from netagent.config import MANAGED_KEYS, REMEDIATION_MODES
from netagent.state import RemediationStatus


def families(status: RemediationStatus) -> Iterable[Metric]:
    mode = GaugeMetricFamily("netagent_remediation_mode",
                             "Remediation mode: 0 off, 1 dry-run, 2 apply.")
    mode.add_metric([], REMEDIATION_MODES.index(status.mode))
    actions = CounterMetricFamily(
        "netagent_remediation_actions",
        "Changes netagent made (applied), could not make (failed) or would not make "
        "(refused: a ceiling, or a limit read-only here), by key.", labels=["key", "result"])
    for (key, result), count in sorted(status.actions.items()):
        actions.add_metric([key, result], count)
    managed = GaugeMetricFamily(
        "netagent_remediation_managed",
        "1 while netagent manages the key, 0 when it is left to someone else (set in a "
        "sysctl file, changed by hand, excluded).", labels=["key"])
    for key in MANAGED_KEYS:
        if key in status.managed:
            managed.add_metric([key], 1 if status.managed[key] else 0)
    ceiling = GaugeMetricFamily(
        "netagent_remediation_ceiling_reached",
        "1 while the key is at its ceiling and demand wants more.", labels=["key"])
    for key in sorted(status.at_ceiling):
        ceiling.add_metric([key], 1)
    values = GaugeMetricFamily("netagent_sysctl_value",
                               "Current value of every key remediation may manage.",
                               labels=["key"])
    for key in MANAGED_KEYS:
        value = status.values.get(key)
        if value is not None:
            values.add_metric([key], value)
    return [mode, actions, managed, ceiling, values]
