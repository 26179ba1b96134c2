"""``conntrack.table`` and ``conntrack.errors``: how full the table is, and what it drops.

The kernel refuses a new entry once this namespace's count reaches ``nf_conntrack_max`` and
no unassured entry can be evicted (``__nf_conntrack_alloc`` and ``early_drop`` in
net/netfilter/nf_conntrack_core.c): the packet is dropped (``drop``, after a failed
``early_drop``) and the kernel logs "nf_conntrack: table full, dropping packet".
``insert_failed`` counts entries that lost an insertion race and could not be merged: the
NAT clash behind the 5-second DNS timeouts in Kubernetes.
"""

from __future__ import annotations

from typing import Any

from netagent.checks import forecasts
from netagent.checks.forecasts import Level
from netagent.config import Config, ConntrackThresholds, ForecastConfig
from netagent.model import (
    Change,
    ChangeSet,
    CheckResult,
    ConntrackObservation,
    FixPart,
    Forecast,
    ModuleParameterChange,
    Observations,
    Status,
    SysctlChange,
)
from netagent.parse.conntrack import FixPresence, dns_race_fixes

SOURCE = "conntrack"
TABLE, ERRORS = "conntrack.table", "conntrack.errors"
# counters shown as evidence, in this order; the first three decide the status
WATCHED = ("drop", "early_drop", "insert_failed", "clash_resolve", "chaintoolong", "invalid",
           "search_restart")
SYSCTL_FILE = "90-netagent-conntrack.conf"


def judge(obs: Observations, config: Config) -> list[CheckResult]:
    return evaluate(obs, config.thresholds.conntrack, forecast_config=config.forecast)


def evaluate(obs: Observations, thresholds: ConntrackThresholds, *,
             forecast_config: ForecastConfig | None = None) -> list[CheckResult]:
    current = obs.get(SOURCE, ConntrackObservation)
    if current is None:
        reason = obs.errors.get(SOURCE, "the conntrack source was not read")
        return [
            CheckResult(id=TABLE, status=Status.UNKNOWN, summary=f"conntrack table: {reason}"),
            CheckResult(id=ERRORS, status=Status.UNKNOWN,
                        summary=f"conntrack errors: {reason}"),
        ]
    before = obs.get_baseline(SOURCE, ConntrackObservation)
    level = conntrack_level(current)
    forecast = None if level is None else forecasts.forecast_of(
        obs, "conntrack", level, forecasts.baseline_total(before),
        forecast_config or ForecastConfig())
    return [check_table(current, thresholds, forecast=forecast,
                        forecast_config=forecast_config),
            check_errors(current, before, thresholds)]


def conntrack_level(obs: ConntrackObservation) -> Level | None:
    """What the forecasts follow: this namespace's count against nf_conntrack_max."""
    if obs.count is None or not obs.max:
        return None
    return Level(obs.count, obs.max, obs.count, obs.monotonic)


# --- conntrack.table ----------------------------------------------------------------------


def _status_of(ratio: float, t: ConntrackThresholds) -> Status:
    if ratio >= t.critical_ratio:
        return Status.CRITICAL
    if ratio >= t.warning_ratio:
        return Status.WARNING
    return Status.OK


def check_table(obs: ConntrackObservation, t: ConntrackThresholds, *,
                forecast: Forecast | None = None,
                forecast_config: ForecastConfig | None = None) -> CheckResult:
    count, max_, buckets = obs.count, obs.max, obs.buckets
    if count is None or max_ is None:
        reasons = "; ".join(obs.problems.values()) or "count or nf_conntrack_max unreadable"
        return CheckResult(id=TABLE, status=Status.UNKNOWN,
                           summary=f"conntrack table: cannot be judged: {reasons}")
    evidence: dict[str, Any] = {
        "entries": count,
        "nf_conntrack_max": max_,
        "nf_conntrack_buckets": buckets,
        "namespace": obs.namespace,
        "scope": "entries are this network namespace's; max and buckets are global",
    }
    if buckets:
        # The hash table is shared by every namespace: this is a floor outside the host.
        evidence["average_chain_length"] = round(count / buckets, 3)
    if obs.stats is not None:
        evidence["stats_source"] = obs.stats.source
    if max_ == 0:
        # nf_conntrack_max = 0 disables the limit (the check in __nf_conntrack_alloc is
        # skipped), so nothing here can fill up.
        return CheckResult(id=TABLE, status=Status.OK, observed=count, limit=0,
                           summary=f"conntrack table: {count} entries, no limit "
                                   f"(nf_conntrack_max = 0)", evidence=evidence)
    ratio = count / max_
    evidence["utilisation"] = round(ratio, 4)
    status = _status_of(ratio, t)
    if forecast is not None:
        status = max(status, forecast.level)
        evidence.update(forecasts.evidence(forecast))
    parts = [f"conntrack table: {count} of {max_} entries ({100 * ratio:.0f}% of "
             f"nf_conntrack_max)"]
    if forecast_words := forecasts.words(forecast):
        parts.append(forecast_words)
    if count >= max_:
        parts.append("full: new connections are dropped")
    if buckets:
        parts.append(f"average chain length {count / buckets:.2f} over {buckets} buckets")
    return CheckResult(
        id=TABLE, status=status, summary="; ".join(parts), observed=count, limit=max_,
        fix=table_fix(forecasts.projected(count, forecast, forecast_config or ForecastConfig()),
                      max_, buckets, t, status),
        evidence=evidence,
    )


def _next_power_of_two(value: float) -> int:
    n = 1
    while n < value:
        n *= 2
    return n


def table_changes(count: int, max_: int, buckets: int | None,
                  t: ConntrackThresholds) -> ChangeSet:
    """The one sizing rule for the conntrack table: ``nf_conntrack_max`` that puts ``count``
    at ``headroom_ratio`` of it (a power of two), and buckets = max/4 when that is more.

    Raising only, never lowering (kube-proxy does the same: it sets nf_conntrack_max when the
    current value is lower, and the hash size to max/4, i.e. four entries per bucket).
    """
    new_max = max(max_, _next_power_of_two(count / t.headroom_ratio))
    new_buckets = new_max // 4
    reason = (f"{count} entries at most {t.headroom_ratio:.0%} of nf_conntrack_max, "
              f"four entries per bucket")
    changes: list[Change] = [SysctlChange(key="net.netfilter.nf_conntrack_max", current=max_,
                                          target=new_max, reason=reason)]
    if buckets is None or new_buckets > buckets:
        changes.append(ModuleParameterChange(module="nf_conntrack", parameter="hashsize",
                                             current=buckets, target=new_buckets,
                                             reason=reason))
    return ChangeSet(tuple(changes), conf_file=SYSCTL_FILE,
                     note="# in the host's network namespace: the limit and the hash table "
                          "are global")


def table_fix(count: int, max_: int, buckets: int | None, t: ConntrackThresholds,
              status: Status) -> tuple[FixPart, ...]:
    if status is Status.OK and count <= t.headroom_ratio * max_:
        return ()
    return (table_changes(count, max_, buckets, t),)


# --- conntrack.errors ---------------------------------------------------------------------


def check_errors(obs: ConntrackObservation, before: ConntrackObservation | None,
                 t: ConntrackThresholds) -> CheckResult:
    stats = obs.stats
    if stats is None:
        reason = obs.problems.get("stats", "statistics unreadable")
        return CheckResult(id=ERRORS, status=Status.UNKNOWN,
                           summary=f"conntrack errors: cannot be judged: {reason}")
    since_boot: dict[str, int] = {}
    for name in WATCHED:
        value = stats.get(name)
        if value is not None:
            since_boot[name] = value
    fixes = dns_race_fixes(obs.kernel)
    evidence: dict[str, Any] = {
        "stats_source": stats.source,
        "stats_layout": stats.layout,
        "cpus": stats.cpus,
        "since_boot": since_boot,
        "not_reported_by_this_kernel": [n for n in WATCHED if n not in since_boot],
        "kernel": obs.kernel.release,
        "kernel_race_fixes": {
            f"{p.fix.commit} {p.fix.subject}": p.describe() for p in fixes},
    }
    limit = {"drop": 0, "early_drop": 0, "insert_failed": t.insert_failed_per_second}

    interval = None
    if before is not None and before.stats is not None:
        interval = round(obs.monotonic - before.monotonic, 3)
    if interval is None or interval <= 0:
        return _without_rates(obs, since_boot, evidence, limit, t)

    deltas: dict[str, int | None] = {}
    for name, now in since_boot.items():
        then = before.stats.get(name) if before and before.stats else None
        # A counter that went down was reset (another namespace, a module reload): unknown.
        deltas[name] = None if then is None or now < then else now - then
    rates = {name: (round(d / interval, 3) if d is not None else None)
             for name, d in deltas.items()}
    evidence.update(interval_seconds=interval, deltas=deltas, per_second=rates)

    dropped = (deltas.get("drop") or 0) + (deltas.get("early_drop") or 0)
    failed = deltas.get("insert_failed") or 0
    failed_rate = rates.get("insert_failed") or 0.0
    if dropped:
        status = Status.CRITICAL
    elif failed_rate > t.insert_failed_per_second:
        status = Status.WARNING
    else:
        status = Status.OK

    shown = ", ".join(f"{name} +{deltas[name]} ({rates[name]}/s)" for name in WATCHED[:4]
                      if deltas.get(name) is not None)
    summary = f"conntrack errors over {interval:g} s: {shown or 'no counters'}"
    cause = _cause(obs, deltas)
    if cause:
        evidence["likely_cause"] = cause
    if status is not Status.OK and cause:
        summary += f"; likely {cause.split(':')[0]}"
    elif failed:
        summary += (f"; insert_failed {failed_rate}/s is within "
                    f"{t.insert_failed_per_second}/s")
    return CheckResult(
        id=ERRORS, status=status, summary=summary,
        observed={name: rates.get(name) for name in ("drop", "early_drop", "insert_failed")},
        limit=limit,
        fix=_mitigations(obs, deltas, fixes, t) if status is not Status.OK else (),
        evidence=evidence,
    )


def _without_rates(obs: ConntrackObservation, since_boot: dict[str, int],
                   evidence: dict[str, Any], limit: dict[str, float],
                   t: ConntrackThresholds) -> CheckResult:
    """No earlier sample (``--interval 0``): rates are unknown; judge only a full table."""
    evidence["per_second"] = None
    evidence["rates"] = "unknown: no earlier sample (interval 0); run with --interval > 0"
    full = obs.count is not None and bool(obs.max) and obs.max is not None \
        and obs.count >= obs.max
    # Drops beyond insert_failed (each unresolved clash counts in both) and early drops
    # mean the table was full at some time since boot: the only evidence without rates.
    full_since_boot = (since_boot.get("drop", 0) > since_boot.get("insert_failed", 0)
                       or since_boot.get("early_drop", 0) > 0)
    boot = ", ".join(f"{n} {since_boot[n]}" for n in WATCHED[:4] if n in since_boot)
    if full:
        status = Status.CRITICAL
        head = f"table full now ({obs.count} of {obs.max}): packets are being dropped"
    elif full_since_boot:
        status = Status.WARNING
        head = ("the table was full at some time since boot (drops beyond insert_failed); "
                "rates unknown without an interval")
    else:
        status = Status.OK
        head = "no table-full drops since boot; rates unknown without an interval"
    cause = _cause(obs, dict(since_boot)) if status is not Status.OK else ""
    if cause:
        evidence["likely_cause"] = cause
    return CheckResult(
        id=ERRORS, status=status, summary=f"conntrack errors: {head} (since boot: {boot})",
        observed=None, limit=limit,
        fix=(_mitigations(obs, dict(since_boot), dns_race_fixes(obs.kernel), t)
             if status is not Status.OK else ()),
        evidence=evidence,
    )


def _cause(obs: ConntrackObservation, deltas: dict[str, Any]) -> str:
    dropped = deltas.get("drop") or 0
    failed = deltas.get("insert_failed") or 0
    causes = []
    # Every unresolved insert clash drops its packet and counts in both insert_failed and
    # drop; the other drops are flows that found no free entry (__nf_conntrack_alloc):
    # the table was full, or memory ran out. early_drop only happens when it is full.
    if dropped > failed or deltas.get("early_drop"):
        now = ""
        if obs.count is not None and obs.max:
            now = f" (now {obs.count} of {obs.max}; it may have emptied since)"
        causes.append(f"table full: new flows found no free entry{now} and no unassured "
                      f"entry to evict, so their packets were dropped (kernel log: "
                      f"'nf_conntrack: table full, dropping packet')")
    if failed:
        if deltas.get("chaintoolong"):
            causes.append("hash chains too long: inserts refused (chaintoolong rose); more "
                          "buckets spread the entries")
        causes.append("insertion race (the NAT clash behind DNS timeouts): two packets of "
                      "one new flow (glibc sends the A and AAAA queries in parallel from one "
                      "socket) raced to create its entry and the loser could not be merged; "
                      "its packet is dropped and the resolver waits out its 5 s timeout")
    return "; ".join(causes)


def _mitigations(obs: ConntrackObservation, deltas: dict[str, Any],
                 fixes: tuple[FixPresence, ...], t: ConntrackThresholds) -> tuple[FixPart, ...]:
    parts: list[FixPart] = []
    dropped, failed = deltas.get("drop") or 0, deltas.get("insert_failed") or 0
    if (dropped > failed or deltas.get("early_drop")) and obs.max and obs.count is not None:
        # The table was full at some moment, so its peak was nf_conntrack_max at least:
        # size for that peak (or for today's count, if it is higher still).
        parts.append(table_changes(max(obs.count, obs.max), obs.max, obs.buckets, t))
    lines = []
    if failed:
        lines.append("run a node-local DNS cache (NodeLocal DNSCache: CoreDNS as a DaemonSet "
                     "on 169.254.20.10 with NOTRACK for port 53, kubelet clusterDNS pointed "
                     "at it) so DNS skips conntrack and NAT")
        lines.append("or set resolver options in the pods' dnsConfig: "
                     "'single-request-reopen' (A and AAAA from separate sockets) or 'use-vc' "
                     "(DNS over TCP); musl ignores both")
        missing = [p.fix for p in fixes if not p.present]
        if missing:
            lines.append("kernel lacks upstream fixes: " + ", ".join(
                f"{f.commit} ({f.release})" for f in missing) + "; upgrade the kernel")
    if not parts and not lines and dropped:
        lines.append("see 'dmesg | grep nf_conntrack' and 'conntrack -S' for why packets "
                     "were dropped")
    if lines:
        parts.append(("\n" if parts else "") + "\n".join(lines))
    return tuple(parts)
