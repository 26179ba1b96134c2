"""``neighbour.ipv4`` and ``neighbour.ipv6``: how close each table is to gc_thresh3.

The kernel refuses a new entry once the entries it counts reach gc_thresh3
(``neigh_alloc`` in net/core/neighbour.c: ``entries >= gc_thresh3`` after a failed forced GC)
and logs "neighbor table overflow!". Above gc_thresh2 it runs forced GC at most every 5 s.
"""

from __future__ import annotations

from typing import Any

from netagent.checks import forecasts
from netagent.checks.forecasts import Level
from netagent.checks.sysctl import neighbour_thresholds, round_up
from netagent.config import Config, ForecastConfig, NeighbourThresholds
from netagent.model import (
    ChangeSet,
    CheckResult,
    ClusterInfo,
    FixPart,
    Forecast,
    NeighbourLimits,
    NeighbourObservation,
    NeighbourSnapshot,
    NeighbourStats,
    NeighbourTable,
    Observations,
    Status,
    SysctlChange,
)
from netagent.parse.neighbours import GcRule

SOURCE = "neighbours"
TOP = 5
NAMES = {"ipv4": "IPv4 neighbour (ARP)", "ipv6": "IPv6 neighbour (ND)"}
SYSCTL = {"ipv4": "net.ipv4.neigh.default", "ipv6": "net.ipv6.neigh.default"}


def judge(obs: Observations, config: Config) -> list[CheckResult]:
    return evaluate(obs, config.thresholds.neighbour, nodes=cluster_nodes(obs, config),
                    forecast_config=config.forecast)


def cluster_nodes(obs: Observations, config: Config) -> int | None:
    """The cluster's node count: the ``cluster`` source's reading when it ran (the API, or
    the configuration when the API could not be read), else ``nodes:``/``--nodes``."""
    info = obs.get("cluster", ClusterInfo)
    return info.nodes if info is not None else config.nodes


def evaluate(obs: Observations, thresholds: NeighbourThresholds, *,
             nodes: int | None = None,
             forecast_config: ForecastConfig | None = None) -> list[CheckResult]:
    current = obs.get(SOURCE, NeighbourSnapshot)
    if current is None:
        reason = obs.errors.get(SOURCE, "the neighbour source was not read")
        return [CheckResult(id=f"neighbour.{f}", status=Status.UNKNOWN,
                            summary=f"{NAMES[f]} table: {reason}") for f in NAMES]
    baseline = obs.get_baseline(SOURCE, NeighbourSnapshot)
    results = []
    for family, observation in current.families.items():
        before = baseline.families.get(family) if baseline else None
        level = neighbour_level(observation)
        forecast = None if level is None else forecasts.forecast_of(
            obs, f"neighbour.{family}", level,
            forecasts.baseline_total(before), forecast_config or ForecastConfig())
        results.append(check_family(observation, before, thresholds, nodes=nodes,
                                    forecast=forecast, forecast_config=forecast_config))
    return results


def neighbour_level(obs: NeighbourObservation) -> Level | None:
    """What the forecasts follow: the count sizing uses (``count_bounds``' high)."""
    if obs.stats is None or obs.limits is None or "disabled" in obs.problems:
        return None
    _, high, _ = count_bounds(obs, obs.stats)
    return Level(high, obs.limits.gc_thresh3, obs.stats.entries, obs.monotonic)


def count_bounds(obs: NeighbourObservation, stats: NeighbourStats) -> tuple[int, int, bool]:
    """(low, high, exact): the figure the kernel compares with gc_thresh3, or bounds on it.
    Sizing (the check's fix and the planner) uses ``high``."""
    table = obs.table
    if not GcRule.for_kernel(obs.kernel).exempt_permanent_and_external:
        # Before 5.0 every entry counts, and the stat file's global `entries` is that count.
        return stats.entries, stats.entries, True
    if table is not None and (table.exact or table.total == stats.entries):
        # Every namespace was read, or some process could not be inspected but the entries
        # read add up to the kernel's own global total: nothing is hidden either way.
        return table.counted, table.counted, True
    # Unread namespaces hide entries: what was read is a floor, and the global `entries`
    # (every entry, PERMANENT included) is a ceiling.
    low = table.counted if table is not None else 0
    return low, max(stats.entries, low), False


def _status_of(count: int, *, gc_thresh2: int, gc_thresh3: int,
               t: NeighbourThresholds) -> Status:
    ratio = count / gc_thresh3 if gc_thresh3 else 1.0
    if ratio >= t.critical_ratio:
        return Status.CRITICAL
    if ratio >= t.warning_ratio or count > gc_thresh2:
        return Status.WARNING
    return Status.OK


def check_family(
    obs: NeighbourObservation,
    before: NeighbourObservation | None,
    t: NeighbourThresholds,
    *,
    nodes: int | None = None,
    forecast: Forecast | None = None,
    forecast_config: ForecastConfig | None = None,
) -> CheckResult:
    check_id = f"neighbour.{obs.family}"
    name = NAMES[obs.family]
    if "disabled" in obs.problems:
        return CheckResult(id=check_id, status=Status.OK,
                           summary=f"{name} table: not in use: {obs.problems['disabled']}")
    if obs.stats is None or obs.limits is None:
        reasons = "; ".join(obs.problems.values()) or "limits or statistics unreadable"
        return CheckResult(id=check_id, status=Status.UNKNOWN,
                           summary=f"{name} table: cannot be judged: {reasons}")
    stats, limits = obs.stats, obs.limits
    rule = GcRule.for_kernel(obs.kernel)
    evidence: dict[str, Any] = {
        "counting_rule": rule.describe(),
        "kernel": obs.kernel.release,
        "entries_all_namespaces": stats.entries,
        "gc_thresh1": limits.gc_thresh1,
        "gc_thresh2": limits.gc_thresh2,
        "gc_thresh3": limits.gc_thresh3,
        "gc_interval_seconds": limits.gc_interval,
        "gc_stale_time_seconds": limits.gc_stale_time,
        "table_fulls_since_boot": stats.get("table_fulls"),
        "forced_gc_runs_since_boot": stats.get("forced_gc_runs"),
        "unresolved_discards_since_boot": stats.get("unresolved_discards"),
    }

    table = obs.table
    low, high, exact = count_bounds(obs, stats)
    evidence["counted"] = low if exact else {"at_least": low, "at_most": high}
    evidence["exact"] = exact

    if table is not None:
        evidence.update(_table_evidence(table))

    # table_fulls rising during the check means the kernel is refusing entries right now.
    fulls_delta = _delta(before.stats if before else None, stats, "table_fulls")
    forced_delta = _delta(before.stats if before else None, stats, "forced_gc_runs")
    if fulls_delta is not None:
        evidence["table_fulls_during_check"] = fulls_delta
        evidence["forced_gc_runs_during_check"] = forced_delta
        evidence["interval_seconds"] = (
            round(obs.monotonic - before.monotonic, 3) if before else None)

    g2, g3 = limits.gc_thresh2, limits.gc_thresh3
    status_low = _status_of(low, gc_thresh2=g2, gc_thresh3=g3, t=t)
    status_high = _status_of(high, gc_thresh2=g2, gc_thresh3=g3, t=t)
    pct = 100.0 * low / g3 if g3 else 100.0
    if exact:
        status = status_low
        headline = f"{low} of {g3} entries ({pct:.0f}% of gc_thresh3)"
    else:
        status = status_low if (status_low == status_high or status_low > Status.OK) \
            else Status.UNKNOWN
        headline = (f"between {low} and {high} of {g3} entries "
                    f"({pct:.0f}%+ of gc_thresh3; "
                    f"{len(table.unreadable) if table else 'no'} namespaces unreadable)")
    if fulls_delta:
        status = Status.CRITICAL
    if forecast is not None and forecast.level > Status.OK and status is not Status.UNKNOWN:
        status = max(status, forecast.level)
    evidence.update(forecasts.evidence(forecast))

    parts = [f"{name} table: {headline}"]
    if forecast_words := forecasts.words(forecast):
        parts.append(forecast_words)
    if low > g2:
        parts.append(f"above gc_thresh2 {g2} (forced GC runs)")
    if table is not None and low:
        parts.append(f"{table.unreclaimable} unreclaimable by forced GC")
    if fulls_delta:
        parts.append(f"kernel refused {fulls_delta} new entries during the check "
                     f"(table_fulls rose)")
    elif stats.get("table_fulls"):
        parts.append(f"table_fulls {stats.get('table_fulls')} since boot")
    capacity = _capacity(high, g3, nodes)
    if capacity:
        evidence.update(capacity)
        parts.append(f"room for about {capacity['nodes_tolerated']} nodes at "
                     f"{capacity['entries_per_node']:.2f} entries per node "
                     f"(cluster: {nodes})")
    if status is Status.UNKNOWN:
        parts.append("cannot tell ok from warning without reading every namespace "
                     "(run as root with the host PID namespace)")

    return CheckResult(
        id=check_id,
        status=status,
        summary="; ".join(parts),
        observed=low if exact else {"at_least": low, "at_most": high},
        limit=g3,
        fix=_recommendation(obs.family, high, limits, t, status, nodes=nodes,
                            forecast=forecast, config=forecast_config or ForecastConfig()),
        evidence=evidence,
    )


def _table_evidence(table: NeighbourTable) -> dict[str, Any]:
    devices: dict[str, int] = {}
    for ns in table.namespaces:
        for dev, n in ns.by_device.items():
            devices[f"{ns.namespace}/{dev}"] = n
    top_devices = dict(sorted(devices.items(), key=lambda kv: -kv[1])[:TOP])
    top_ns = {ns.namespace: ns.counted
              for ns in sorted(table.namespaces, key=lambda ns: -ns.counted)[:TOP]}
    unreadable = dict(sorted(table.unreadable.items())[:TOP])
    return {
        "entries_read": table.total,
        "unreclaimable": table.unreclaimable,
        "reclaimable": table.counted - table.unreclaimable,
        "states": dict(sorted(table.by_state().items())),
        "flags": dict(sorted(table.by_flag().items())),
        "top_devices": top_devices,
        "top_namespaces": top_ns,
        "namespaces_scanned": table.namespaces_read,
        "namespaces_with_entries": len(table.namespaces),
        "namespaces_unreadable": len(table.unreadable),
        "unreadable_examples": unreadable,
    }


def _delta(before: NeighbourStats | None, after: NeighbourStats, name: str) -> int | None:
    if before is None:
        return None
    return max(0, after.get(name) - before.get(name))


# A forecast of the count at twice today's cluster size is trusted enough to be sized at 70%
# of the limit; today's count is sized at the configured headroom (docs/design.md §2.6:
# two forecasts, take the larger).
FORECAST_RATIO = 0.70
GROWTH = 2


def _capacity(count: int, gc_thresh3: int, nodes: int | None) -> dict[str, Any]:
    """How many nodes fit before gc_thresh3 if entries grow with the cluster as today."""
    if not nodes or count <= 0:
        return {}
    per_node = count / nodes
    return {
        "cluster_nodes": nodes,
        "entries_per_node": round(per_node, 3),
        "nodes_tolerated": int(gc_thresh3 / per_node),
    }


def neighbour_target(count: int, gc_thresh3: int, t: NeighbourThresholds, *,
                     nodes: int | None, grown: str = "") -> tuple[float, int, str]:
    """(needed, target, why): the gc_thresh3 that holds ``count`` entries at the headroom
    (and, when the cluster size is known, twice the cluster at FORECAST_RATIO); that rounded
    up to 1,024 and never below today's; and why. Today's limit suffices when needed <= it.

    The one sizing rule for the neighbour tables: the check's fix and the planner use it.
    ``grown`` says why ``count`` is more than today's (a forecast's growth), if it is.
    """
    needed = count / t.headroom_ratio
    what = f"the {count} entries {grown}" if grown else f"today's {count} entries"
    why = f"Raise the thresholds so {what} use at most {t.headroom_ratio:.0%} of gc_thresh3"
    if nodes:
        forecast = GROWTH * count / FORECAST_RATIO
        if forecast > needed:
            needed = forecast
            why += (f" and a cluster of {GROWTH * nodes} nodes ({GROWTH * count} entries) "
                    f"at most {FORECAST_RATIO:.0%}")
    return needed, max(gc_thresh3, round_up(needed)), why


def neighbour_changes(family: str, target3: int, limits: NeighbourLimits,
                      reason: str) -> ChangeSet:
    """gc_thresh1/2/3 for a gc_thresh3 of ``target3``, scaled 1:4:8, never lowered."""
    current = {"gc_thresh1": limits.gc_thresh1, "gc_thresh2": limits.gc_thresh2,
               "gc_thresh3": limits.gc_thresh3}
    changes = tuple(
        SysctlChange(key=key, current=current[key.rsplit(".", 1)[1]],
                     target=max(current[key.rsplit(".", 1)[1]], value), reason=reason)
        for key, value in neighbour_thresholds(SYSCTL[family], target3).items())
    return ChangeSet(changes, conf_file=f"90-netagent-neighbour-{family}.conf")


def _recommendation(family: str, count: int, limits: NeighbourLimits,
                    t: NeighbourThresholds, status: Status, *, nodes: int | None,
                    forecast: Forecast | None = None,
                    config: ForecastConfig | None = None) -> tuple[FixPart, ...]:
    g3 = limits.gc_thresh3
    grown = forecasts.projected(count, forecast, config or ForecastConfig())
    needed, target3, why = neighbour_target(
        grown, g3, t, nodes=nodes,
        grown=forecasts.growth_words(config or ForecastConfig()) if grown > count else "")
    if needed <= g3 and status is Status.OK:
        return ()
    reason = why + " (gc_thresh1/2 scaled 1:4:8 as the defaults)"
    return (reason + ":\n", neighbour_changes(family, target3, limits, reason))
