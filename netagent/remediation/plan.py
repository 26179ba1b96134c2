"""The planner: what netagent would change now, and what it refuses to, with why. Pure.

Inputs: the observations (the tables' demand), the node's facts (current values, the keys
set in the administrator's sysctl files, the memory), netagent's journal and the
configuration. Policy (docs/design.md §4.6):

- only raise, never lower; act once a table holds ``trigger_ratio`` of its limit, or the
  agent's forecast says it is full within ``horizon_seconds`` (then size for the count that
  growth brings by then), or at once while the kernel refuses entries (``table_fulls`` or
  conntrack ``drop`` rising);
- size exactly as the check's fix does (``checks.neighbours.neighbour_target`` and
  ``neighbour_changes``, ``checks.conntrack.table_changes``): one rule, not two;
- at most x4 per step, at most one change per key per ``cooldown_seconds`` (unless the
  table refuses entries now), never above the key's ceiling;
- leave a key to the administrator when it is excluded, set in a sysctl file other than
  netagent's own, or changed after netagent last wrote it (unless ``take_over`` names it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from netagent.checks.conntrack import table_changes
from netagent.checks.dns import notrack_coverage
from netagent.checks.neighbours import count_bounds, neighbour_changes, neighbour_target
from netagent.config import (
    CONNTRACK_MAX,
    HASHSIZE,
    MANAGED_KEYS,
    Config,
    RemediationConfig,
)
from netagent.model import (
    ConntrackObservation,
    DnsObservation,
    Journal,
    ModuleParameterChange,
    NeighbourLimits,
    NeighbourSnapshot,
    NodeFacts,
    Observations,
    SysctlChange,
)

MAX_STEP = 4  # at most x4 per step
# Worst-case bytes per entry, measured on Linux 6.18 (README, Remediation): a neighbour
# entry is a kmalloc-512 object (448 bytes of slab per entry added), a conntrack entry a
# 256-byte nf_conntrack object plus its extensions and hash bucket.
ENTRY_BYTES = {"neighbour": 512, "conntrack": 320}


@dataclass(frozen=True)
class Demand:
    table: str  # neighbour.ipv4 | neighbour.ipv6 | conntrack
    count: int
    limit: int
    refusing: bool  # the kernel refused entries between the two samples
    seconds_to_full: float | None = None  # the agent's forecast, when it says it fills
    growth_per_second: float | None = None


@dataclass(frozen=True)
class Action:
    key: str
    current: int
    target: int
    reason: str
    kind: str = "sysctl"  # or module_parameter


@dataclass(frozen=True)
class NotrackAction:
    address: str
    add: bool  # False: remove netagent's table
    reason: str


@dataclass(frozen=True)
class Refusal:
    key: str
    reason: str
    ceiling: bool = False  # at its ceiling: the finding is critical


@dataclass(frozen=True)
class Elsewhere:
    key: str
    why: str
    new: bool  # first seen now (the journal does not have it yet)


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    notrack: tuple[NotrackAction, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    elsewhere: tuple[Elsewhere, ...] = ()
    demands: tuple[Demand, ...] = field(default=())

    @property
    def pending(self) -> bool:
        return bool(self.actions or self.notrack)


def demands(obs: Observations) -> list[Demand]:
    out = []
    snap = obs.get("neighbours", NeighbourSnapshot)
    before = obs.get_baseline("neighbours", NeighbourSnapshot)
    for family, o in (snap.families.items() if snap else ()):
        if o.limits is None or o.stats is None:
            continue
        _, count, _ = count_bounds(o, o.stats)
        b = before.families.get(family) if before else None
        refusing = bool(b and b.stats and o.stats.counters.get("table_fulls", 0)
                        > b.stats.counters.get("table_fulls", 0))
        out.append(_forecast(obs, Demand(f"neighbour.{family}", count, o.limits.gc_thresh3,
                                         refusing)))
    ct = obs.get("conntrack", ConntrackObservation)
    ct_before = obs.get_baseline("conntrack", ConntrackObservation)
    if ct and ct.count is not None and ct.max:
        refusing = bool(ct_before and ct.stats and ct_before.stats and (
            ct.stats.counters.get("drop", 0) > ct_before.stats.counters.get("drop", 0)
            or ct.stats.counters.get("early_drop", 0)
            > ct_before.stats.counters.get("early_drop", 0)))
        out.append(_forecast(obs, Demand("conntrack", ct.count, ct.max, refusing)))
    return out


def _forecast(obs: Observations, d: Demand) -> Demand:
    """``d`` with the agent's forecast of its table (``netagent remediate`` has none: it
    does not act on a few seconds' rate)."""
    f = (obs.forecasts or {}).get(d.table)
    if f is None or f.seconds_to_full is None:
        return d
    return replace(d, seconds_to_full=f.seconds_to_full, growth_per_second=f.rate_per_second)


def _sizing(d: Demand, r: RemediationConfig) -> int:
    """The count to size for: today's, or when a forecast made the table due, the count
    its growth brings within the horizon."""
    if d.seconds_to_full is None or not d.growth_per_second or \
            d.seconds_to_full > r.horizon_seconds:
        return d.count
    return max(d.count, int(d.count + d.growth_per_second * r.horizon_seconds))


def plan(obs: Observations, facts: NodeFacts, journal: Journal, config: Config) -> Plan:
    r = config.remediation
    tables = demands(obs)
    rules = _Rules(facts, journal, r)
    for d in tables:
        if d.limit <= 0:
            continue
        forecast_due = d.seconds_to_full is not None and d.seconds_to_full <= r.horizon_seconds
        due = d.count >= r.trigger_ratio * d.limit or d.refusing or forecast_due
        size = _sizing(d, r)
        if d.table.startswith("neighbour."):
            family = d.table.split(".", 1)[1]
            values = {lvl: facts.values.get(f"net.{family}.neigh.default.gc_thresh{lvl}")
                      for lvl in (1, 2, 3)}
            if not due or None in values.values():
                continue
            limits = NeighbourLimits(gc_thresh1=values[1] or 0, gc_thresh2=values[2] or 0,
                                     gc_thresh3=values[3] or 0, gc_interval=0,
                                     gc_stale_time=0)
            _, target3, why = neighbour_target(
                size, d.limit, config.thresholds.neighbour, nodes=config.nodes,
                grown=f"expected within the {r.horizon_seconds:g} s horizon"
                if size > d.count else "")
            reason = _reason(d, r, why)
            for change in reversed(neighbour_changes(family, target3, limits,
                                                     reason).changes):
                assert isinstance(change, SysctlChange)
                rules.consider(change.key, change.current, change.target, reason,
                               refusing=d.refusing)
        elif due:
            if not facts.initial_namespace:
                rules.refusals.append(Refusal(CONNTRACK_MAX, "conntrack limits can be raised "
                                              "only from the initial network namespace"))
                continue
            buckets = facts.values.get(HASHSIZE)
            changes = table_changes(size, d.limit, buckets, config.thresholds.conntrack)
            reason = _reason(d, r, f"put {size} conntrack entries at most "
                                   f"{config.thresholds.conntrack.headroom_ratio:.0%} of "
                                   f"nf_conntrack_max, buckets = max/4")
            for change in changes.changes:
                if isinstance(change, ModuleParameterChange):
                    if not facts.hashsize_writable:
                        rules.refusals.append(Refusal(HASHSIZE, "hashsize is not writable "
                                                      "here (/sys/module/nf_conntrack/"
                                                      "parameters read-only): left alone"))
                        continue
                    rules.consider(HASHSIZE, change.current, change.target, reason,
                                   refusing=d.refusing, kind="module_parameter")
                elif isinstance(change, SysctlChange):
                    rules.consider(change.key, change.current, change.target, reason,
                                   refusing=d.refusing)
    return Plan(actions=tuple(rules.actions), notrack=tuple(_notrack(obs, journal, r)),
                refusals=tuple(rules.refusals), elsewhere=tuple(rules.elsewhere.values()),
                demands=tuple(tables))


def _reason(d: Demand, r: RemediationConfig, why: str) -> str:
    if d.refusing:
        head = f"{d.table}: the kernel refused entries ({d.count} of {d.limit})"
    elif d.count < r.trigger_ratio * d.limit and d.seconds_to_full is not None:
        head = (f"{d.table}: {d.count} of {d.limit} ({d.count / d.limit:.0%}), forecast full "
                f"in {d.seconds_to_full:.0f} s (horizon {r.horizon_seconds:g} s)")
    else:
        head = (f"{d.table}: {d.count} of {d.limit} ({d.count / d.limit:.0%}, trigger "
                f"{r.trigger_ratio:.0%})")
    return f"{head}; {why[0].lower()}{why[1:]}"


class _Rules:
    """The per-key policy: administrators, ceilings, the step and the cooldown."""

    def __init__(self, facts: NodeFacts, journal: Journal, r: RemediationConfig) -> None:
        self.facts, self.journal, self.r = facts, journal, r
        self.actions: list[Action] = []
        self.refusals: list[Refusal] = []
        self.elsewhere: dict[str, Elsewhere] = {}
        self.overrides = r.ceiling_overrides()
        for key in MANAGED_KEYS:
            why = self._managed_elsewhere(key)
            if why:
                self.elsewhere[key] = Elsewhere(key, why, key not in journal.released)

    def _managed_elsewhere(self, key: str) -> str:
        r, journal, facts = self.r, self.journal, self.facts
        if key in r.take_over:
            return ""
        if key in r.exclude:
            return "excluded by remediation.exclude"
        if key in journal.released:
            return journal.released[key]
        where = facts.set_in_files.get(key)
        if where:
            return f"set in {where}"
        record = journal.keys.get(key)
        current = facts.values.get(key)
        if record is not None and current is not None and current != record.written:
            return f"changed to {current} after netagent wrote {record.written}"
        return ""

    def ceiling(self, key: str) -> int | None:
        if key in self.overrides:
            return self.overrides[key]
        if key.startswith("net.ipv") and not key.endswith("3"):
            # gc_thresh1/2 keep the 1:4:8 scaling under gc_thresh3's ceiling
            top = self.ceiling(key[:-1] + "3")
            return None if top is None else top // (2 if key.endswith("2") else 8)
        mem = self.facts.mem_total_bytes
        if not mem:
            return None
        share = self.r.memory_share * mem
        if key.startswith("net.ipv"):
            return int(share // ENTRY_BYTES["neighbour"])
        top = int(share // ENTRY_BYTES["conntrack"])
        return top // 4 if key == HASHSIZE else top

    def consider(self, key: str, current: int | None, target: int, reason: str, *,
                 refusing: bool, kind: str = "sysctl") -> None:
        if key in self.elsewhere:
            return
        if current is None:
            self.refusals.append(Refusal(key, f"{key} cannot be read"))
            return
        if target <= current:
            return  # only raise
        ceiling = self.ceiling(key)
        if ceiling is not None and current >= ceiling:
            self.refusals.append(Refusal(key, f"cannot raise further: ceiling {ceiling} "
                                              f"reached", ceiling=True))
            return
        capped = min(target, current * MAX_STEP) if current > 0 else target
        if ceiling is not None:
            capped = min(capped, ceiling)
        record = self.journal.keys.get(key)
        if record is not None and not refusing:
            since = self.facts.now - record.at
            if since < self.r.cooldown_seconds:
                self.refusals.append(Refusal(key, f"cooldown: raised {since:.0f} s ago, at "
                                                  f"most once per "
                                                  f"{self.r.cooldown_seconds:g} s"))
                return
        notes = []
        if capped < target:
            notes.append(f"capped at {capped} (x{MAX_STEP} per step or ceiling "
                         f"{ceiling}) of {target}")
        self.actions.append(Action(key, current, capped,
                                   reason + (f"; {'; '.join(notes)}" if notes else ""), kind))


def _notrack(obs: Observations, journal: Journal, r: RemediationConfig) -> list[NotrackAction]:
    dns = obs.get("dns", DnsObservation)
    n = dns.nodelocal if dns else None
    if n is None:
        return []
    address = n.address
    if n.answering is False and journal.notrack:
        return [NotrackAction(journal.notrack, False, f"the cache at {journal.notrack} no "
                                                      "longer answers: its rules go")]
    if not r.notrack or not n.answering or n.notrack is None:
        return []
    coverage = notrack_coverage(n.notrack, address)
    missing = [p for p in ("udp", "tcp") if not coverage[p]]
    if missing:
        return [NotrackAction(address, True, f"the node-local cache answers at {address} "
                                             f"without NOTRACK for "
                                             f"{'/'.join(missing).upper()} port 53")]
    return []
