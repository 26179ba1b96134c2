"""``dns.<resolver>`` and ``dns.nodelocal``: how pods' name lookups fare on this node.

Per resolver: p95 latency and the share of probes that had to wait out a resolver timeout,
against ``thresholds.dns``; the 5-second pattern (answers arriving only after k x the
resolver timeout, k >= 1: a lost UDP packet and glibc's retry), correlated with conntrack's
``insert_failed`` when the conntrack source was read in the same round; refused, unreachable
and REFUSED/SERVFAIL resolvers by name. For the node-local cache: does something answer on
its link-local address, do raw-table NOTRACK rules keep its traffic out of conntrack, does
kubelet's ``clusterDNS`` point at it. The facts behind it: docs/design.md §2.4.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from netagent.config import Config, DnsThresholds
from netagent.model import (
    DNS_MODES,
    ChangeSet,
    CheckResult,
    DnsObservation,
    DnsProbe,
    NodeLocalDns,
    NotrackChange,
    NotrackRule,
    Observations,
    ResolverProbes,
    Status,
)

SOURCE = "dns"
CONNTRACK = "conntrack"
RESOLVERS_ID = "dns.resolvers"
NODELOCAL_ID = "dns.nodelocal"
HARD_ERRORS = ("connection refused", "host unreachable", "network unreachable")
BAD_RCODES = ("REFUSED", "SERVFAIL", "NOTIMP", "FORMERR")
# Resolvers that serve pods: for them NXDOMAIN on the in-cluster name is a broken cluster
# DNS. The node's own upstream resolver (plain resolv.conf on a node) rightly answers it so.
CLUSTER_ORIGINS = frozenset({"kubelet", "node-local"})
CLUSTER_NAME_PREFIX = "kubernetes.default.svc."
GLIBC_DEFAULT_ORIGIN = "glibc default"


def judge(obs: Observations, config: Config) -> list[CheckResult]:
    return evaluate(obs, config.thresholds.dns)


def evaluate(obs: Observations, t: DnsThresholds) -> list[CheckResult]:
    current = obs.get(SOURCE, DnsObservation)
    if current is None:
        reason = obs.errors.get(SOURCE, "the dns source was not read")
        return [CheckResult(id=RESOLVERS_ID, status=Status.UNKNOWN,
                            summary=f"DNS resolvers: {reason}")]
    growth, growth_note = insert_failed_growth(obs)
    results = []
    if not current.resolvers:
        reason = "; ".join(current.problems.values()) or "no resolver found"
        results.append(CheckResult(id=RESOLVERS_ID, status=Status.UNKNOWN,
                                   summary=f"DNS resolvers: {reason}"))
    cache = current.nodelocal.address if current.nodelocal and current.nodelocal.answering \
        else None
    pod_resolv_conf = current.resolv_conf is not None and any(
        d.strip(".").startswith("svc.") for d in current.resolv_conf.search)
    for resolver in current.resolvers:
        cluster = pod_resolv_conf or bool(CLUSTER_ORIGINS & set(resolver.origins))
        results.append(check_resolver(resolver, t, conntrack_growth=growth,
                                      conntrack_note=growth_note, nodelocal=cache,
                                      budget=current.budget_seconds, cluster_dns=cluster))
    if current.nodelocal is not None:
        results.append(check_nodelocal(current.nodelocal))
    return results


# --- conntrack correlation ---------------------------------------------------------------

def _insert_failed(observation: Any) -> int | None:
    """``insert_failed`` from whatever the conntrack source returned, read by duck typing.

    Accepts an object with ``counters`` (a mapping) or with ``stats.counters``.
    """
    for holder in (observation, getattr(observation, "stats", None)):
        counters = getattr(holder, "counters", None)
        if isinstance(counters, Mapping):
            value = counters.get("insert_failed")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def insert_failed_growth(obs: Observations) -> tuple[int | None, str]:
    """(growth of conntrack insert_failed over the round, what was read), growth None if
    it could not be measured."""
    now = obs.current.get(CONNTRACK)
    if now is None:
        return None, ("conntrack was not read: run `netagent check --only dns --only "
                      "conntrack` (or `conntrack -S`) to see whether insert_failed grows")
    after = _insert_failed(now)
    if after is None:
        return None, "the conntrack observation carries no insert_failed counter"
    before = _insert_failed(obs.baseline.get(CONNTRACK))
    if before is None:
        return None, f"conntrack insert_failed is {after} since boot; no earlier sample"
    return after - before, f"conntrack insert_failed grew by {after - before} this round"


# --- statistics ----------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def waited_out_timeout(probe: DnsProbe) -> bool:
    """The probe waited at least one whole resolver timeout (answered late or never)."""
    return probe.timeouts > 0 or (not probe.answered and probe.error is None)


def pattern_holds(hits: Sequence[DnsProbe], probes: Sequence[DnsProbe], *,
                  min_probes: int) -> bool:
    """Enough answers came after a whole timeout to call it the 5-second pattern: at least
    ``min_probes``, or every answer of the round (at glibc's defaults a 10 s round has room
    for a single late answer, and one lost packet among quick answers is not a pattern)."""
    answered = [p for p in probes if p.answered]
    return len(hits) >= min_probes or (bool(hits) and len(hits) == len(answered))


def five_second_pattern(probes: Iterable[DnsProbe], *, timeout: float,
                        tolerance: float) -> list[DnsProbe]:
    """Answered probes whose latency sits within ``tolerance`` of k x timeout, k >= 1.

    That is an answer that came only after a retry: the first packet (or its answer) was
    lost and the client sat out its whole timeout, the signature of glibc's parallel
    A/AAAA meeting the conntrack insertion race (5 s with the default timeout).
    """
    hits = []
    for probe in probes:
        if not probe.answered or probe.timeouts < 1 or timeout <= 0:
            continue
        k = round(probe.latency / timeout)
        if k >= 1 and abs(probe.latency - k * timeout) <= tolerance * k * timeout:
            hits.append(probe)
    return hits


def _mode_summary(probes: Sequence[DnsProbe]) -> dict[str, Any]:
    latencies = [p.latency for p in probes]
    return {
        "probes": len(probes),
        "answered": sum(p.answered for p in probes),
        "waited_out_timeout": sum(waited_out_timeout(p) for p in probes),
        "failed": sum(p.failure is not None for p in probes),
        "p50_seconds": round(percentile(latencies, 0.5), 4),
        "p95_seconds": round(percentile(latencies, 0.95), 4),
        "max_seconds": round(max(latencies), 4),
    }


def _ratio_status(value: float, warning: float, critical: float) -> Status:
    if value >= critical and value > 0:
        return Status.CRITICAL
    if value >= warning and value > 0:
        return Status.WARNING
    return Status.OK


# --- one resolver ---------------------------------------------------------------------------

def check_resolver(r: ResolverProbes, t: DnsThresholds, *, conntrack_growth: int | None,
                   conntrack_note: str, nodelocal: str | None = None,
                   budget: float | None = None, cluster_dns: bool = False) -> CheckResult:
    check_id = f"dns.{r.resolver}"
    # A probe the round's budget cut before any whole timeout measured nothing: it is
    # counted, not judged.
    probes = tuple(p for p in r.probes if p.measured)
    unmeasured = len(r.probes) - len(probes)
    evidence: dict[str, Any] = {
        "resolver": r.resolver,
        "from": list(r.origins),
        "timeout_seconds": r.timeout,
        "attempts": r.attempts,
        "probes": len(probes),
        "skipped_for_time_budget": r.skipped + unmeasured,
        "tries": sum(p.tries for p in r.probes),
        "waits_cut_by_budget": sum(p.cut for p in r.probes),
    }
    if not probes:
        spent = (f"the DNS round's time budget ({budget:g} s) ended every probe before an "
                 f"answer or a whole timeout ({r.timeout:g} s)")
        return CheckResult(
            id=check_id, status=Status.UNKNOWN,
            summary=(f"resolver {r.resolver}: not measured: {spent}"
                     if r.skipped or unmeasured
                     else f"resolver {r.resolver}: no probe configured"),
            fix="Raise dns.max_seconds or lower dns.timeout_seconds / dns.probes.",
            evidence=evidence)
    latencies = [p.latency for p in probes]
    p95 = percentile(latencies, 0.95)
    waited = [p for p in probes if waited_out_timeout(p)]
    failed = [p for p in probes if p.failure is not None]
    errors = Counter(p.error for p in probes if p.error)
    rcodes = Counter(p.rcode for p in probes if p.rcode)
    hits = five_second_pattern(probes, timeout=r.timeout, tolerance=t.pattern_tolerance)
    timeout_ratio = len(waited) / len(probes)
    failure_ratio = len(failed) / len(probes)
    by_mode = {m: _mode_summary([p for p in probes if p.mode == m])
               for m in DNS_MODES if any(p.mode == m for p in probes)}
    udp_waits = sum(waited_out_timeout(p) for p in probes if p.protocol == "udp")
    tcp_probes = [p for p in probes if p.protocol == "tcp"]
    tcp_clean = bool(tcp_probes) and all(p.answered and not p.timeouts for p in tcp_probes)
    evidence.update({
        "p95_seconds": round(p95, 4),
        "timeout_ratio": round(timeout_ratio, 4),
        "failure_ratio": round(failure_ratio, 4),
        "by_mode": by_mode,
        "rcodes": dict(rcodes),
        "errors": dict(errors),
        "rcode_by_name": _rcodes_by_name(probes),
        "truncated_answers": sum(p.truncated for p in probes),
        "five_second_pattern": {
            "probes": len(hits),
            "latencies_seconds": [round(p.latency, 3) for p in hits],
            "modes": sorted({p.mode for p in hits}),
        },
        "udp_loss_only": udp_waits > 0 and tcp_clean,
        "conntrack": conntrack_note,
    })
    status = max(
        _ratio_status(p95, t.p95_warning_seconds, t.p95_critical_seconds),
        _ratio_status(timeout_ratio, t.timeout_ratio_warning, t.timeout_ratio_critical),
        _ratio_status(failure_ratio, t.failure_ratio_warning, t.failure_ratio_critical),
    )
    pattern = pattern_holds(hits, probes, min_probes=t.pattern_min_probes)
    if pattern:
        status = max(status, Status.WARNING)
    summary, recommendation = _diagnose(
        r, probes=probes, p95=p95, waited=waited, failed=failed, errors=errors,
        rcodes=rcodes, hits=hits if pattern else [], tcp_clean=tcp_clean,
        conntrack_growth=conntrack_growth, conntrack_note=conntrack_note,
        nodelocal=nodelocal, all_probes=r.probes, budget=budget)
    missing = [p for p in probes if p.rcode == "NXDOMAIN"
               and p.name.lower().startswith(CLUSTER_NAME_PREFIX)]
    evidence["cluster_resolver"] = cluster_dns
    if cluster_dns and missing and status < Status.CRITICAL:
        name = missing[0].name
        status = max(status, Status.WARNING)
        summary = (f"resolver {r.resolver}: NXDOMAIN for {name} in {len(missing)} probes: "
                   f"this resolver serves pods, and pods cannot find the API server's "
                   f"service; {summary.split(': ', 1)[1]}")
        recommendation = (
            f"{r.resolver} serves pods but does not know {name}: check that CoreDNS "
            "(kube-dns) runs and serves the cluster domain (its `kubernetes` plugin names "
            "the domain kubelet's clusterDomain gives pods), and that this node's "
            "clusterDomain matches it. " + (recommendation if status > Status.OK else ""))
    truncated = sum(p.truncated for p in probes)
    if truncated:
        summary += (f"; {truncated} answers came truncated (TC bit): clients must ask again "
                    "over TCP")
    if GLIBC_DEFAULT_ORIGIN in r.origins:
        summary += ("; resolv.conf names no nameserver, so glibc (and every pod given this "
                    f"file) asks {r.resolver}, its default")
    if status is Status.OK:
        recommendation = ""
    return CheckResult(
        id=check_id, status=Status(status), summary=summary,
        observed=round(p95, 4), limit=t.p95_warning_seconds,
        fix=recommendation, evidence=evidence)


def _rcodes_by_name(probes: Sequence[DnsProbe]) -> dict[str, dict[str, int]]:
    out: dict[str, Counter[str]] = {}
    for p in probes:
        out.setdefault(p.name, Counter())[p.rcode or p.failure or "none"] += 1
    return {name: dict(counts) for name, counts in out.items()}


def _tries(probes: Sequence[DnsProbe], timeout: float, budget: float | None) -> str:
    """What the tries really were: how many, how many waited out the timeout, how many the
    round's budget cut short."""
    tries = sum(p.tries for p in probes)
    timeouts = sum(p.timeouts for p in probes)
    cut = sum(p.cut for p in probes)
    parts = [f"{timeouts} waited out the {timeout:g} s timeout"]
    if cut:
        parts.append(f"{cut} cut short by the round's {budget or 0:g} s budget")
    errors = tries - timeouts - cut
    if errors > 0:
        parts.append(f"{errors} ended in an error")
    return f"{tries} {'try' if tries == 1 else 'tries'} made: {', '.join(parts)}"


def _diagnose(r: ResolverProbes, *, probes: Sequence[DnsProbe], p95: float,
              waited: Sequence[DnsProbe], failed: Sequence[DnsProbe],
              errors: Counter[str], rcodes: Counter[str],
              hits: Sequence[DnsProbe], tcp_clean: bool, conntrack_growth: int | None,
              conntrack_note: str, nodelocal: str | None,
              all_probes: Sequence[DnsProbe] = (),
              budget: float | None = None) -> tuple[str, str]:
    """(summary, recommendation) naming what was seen, most specific cause first."""
    addr, n = r.resolver, len(probes)
    where = _where(r.origins)
    head = (f"resolver {addr}: p95 {p95:.3f} s over {n} probes, {len(waited)} waited out a "
            f"{r.timeout:g} s timeout, {len(failed)} failed")
    answered = [p for p in probes if p.answered]
    hard = [e for e in errors if e in HARD_ERRORS]
    if hard and not answered:
        error = max(hard, key=lambda e: errors[e])
        if error == "connection refused":
            return (f"resolver {addr}: nothing listens on port 53 (connection refused: "
                    f"ICMP port unreachable) in {errors[error]} of {n} probes, no answer",
                    f"Start the DNS server on {addr}, or remove {addr} from {where}.")
        return (f"resolver {addr}: {error} in {errors[error]} of {n} probes, no answer",
                f"{addr} cannot be reached ({error}): check `ip route get {addr}` and that "
                f"a host holds that address, or remove it from {where}.")
    if not answered and errors and sum(errors.values()) == n:
        error = errors.most_common(1)[0][0]
        if "without a zone" in error:
            return (f"resolver {addr}: a link-local IPv6 address without a zone: the kernel "
                    f"refuses to send to it (EINVAL) in {errors[error]} of {n} probes",
                    f"Write the nameserver with its interface (`nameserver {addr}%eth0`), as "
                    f"glibc needs too, or use a global address, in {where}.")
        return (f"resolver {addr}: {error} in {errors[error]} of {n} probes, no answer",
                f"Every probe to {addr} failed with {error}: check the address and the "
                f"route to it, or remove it from {where}.")
    if not answered:
        return (f"resolver {addr}: no answer to any of {n} probes "
                f"({_tries(all_probes or probes, r.timeout, budget)})",
                f"Check that the DNS server on {addr} is up and reachable on UDP and TCP "
                f"port 53 (`dig @{addr} {probes[0].name}`), or remove it from {where}.")
    bad = [c for c in BAD_RCODES if rcodes.get(c)]
    if bad and len([p for p in probes if p.rcode in BAD_RCODES]) * 2 >= len(answered):
        code = bad[0]
        if code == "REFUSED":
            return (f"resolver {addr}: answers REFUSED to {rcodes[code]} of {n} probes",
                    f"{addr} does not serve this client: allow this node's and its pods' "
                    "networks in its access list (CoreDNS `acl`, unbound `access-control`, "
                    f"BIND `allow-query`/`allow-recursion`), or remove it from {where}.")
        return (f"resolver {addr}: answers {code} to {rcodes[code]} of {n} probes",
                f"{addr} fails to resolve ({code}): check its logs and its upstream "
                "forwarders (CoreDNS `forward`, unbound `forward-zone`).")
    if hits or waited:
        if hits:
            mean = sum(p.latency for p in hits) / len(hits)
            name = ("the 5-second pattern" if r.timeout == 5 else
                    f"the 5-second pattern (at this resolver's {r.timeout:g} s timeout)")
            summary = (f"resolver {addr}: {name}: {len(hits)} of "
                       f"{n} answers came only after a whole resolver timeout "
                       f"(mean {mean:.2f} s, modes {', '.join(sorted({p.mode for p in hits}))})"
                       f"; {head.split(': ', 1)[1]}")
        else:
            summary = head
        return summary, _loss_advice(addr, conntrack_growth=conntrack_growth,
                                     conntrack_note=conntrack_note, tcp_clean=tcp_clean,
                                     nodelocal=nodelocal)
    tcp = [p for p in probes if p.protocol == "tcp"]
    udp_answered = any(p.answered and p.protocol == "udp" for p in probes)
    if tcp and udp_answered and all(p.failure is not None for p in tcp):
        kinds = Counter(p.failure for p in tcp)
        text = ", ".join(f"{k} x{v}" for k, v in kinds.most_common())
        return (f"resolver {addr}: answers over UDP but not over TCP ({text} in "
                f"{len(tcp)} TCP probes); {head.split(': ', 1)[1]}",
                f"Open TCP port 53 on {addr} (its firewall, its listener): DNS needs TCP "
                "whenever an answer does not fit in UDP (the TC bit makes every client ask "
                "again over TCP), and pods with `options use-vc` use TCP only, so these "
                "lookups fail.")
    if failed:
        kinds = Counter(p.failure for p in failed)
        text = ", ".join(f"{k} x{v}" for k, v in kinds.most_common())
        return (f"{head} ({text})",
                f"Some queries to {addr} fail ({text}): check the resolver's logs.")
    return (head, f"{addr} is slow (p95 {p95:.3f} s): check its load and the latency of its "
            "upstream; a node-local cache answers repeated names on the node.")


def _loss_advice(addr: str, *, conntrack_growth: int | None, conntrack_note: str,
                 tcp_clean: bool, nodelocal: str | None) -> str:
    tcp = " TCP probes were all answered at once." if tcp_clean else ""
    cache = (f" A node-local cache already answers at {nodelocal}: point kubelet clusterDNS "
             "(or the pods' dnsConfig) at it." if nodelocal and nodelocal != addr else "")
    if conntrack_growth:
        return (f"UDP queries to {addr} were lost while {conntrack_note}: the conntrack "
                "insertion race that drops one of glibc's parallel A/AAAA packets (kernel "
                "fixes in 4.19, 5.0 and 5.6 narrow it)." + tcp + " Run NodeLocal DNSCache "
                "(a cache on 169.254.20.10 with NOTRACK rules and TCP upstream) so DNS "
                "bypasses conntrack; until then add `options single-request-reopen` to the "
                "pods' dnsConfig (or `use-vc` to use TCP)." + cache)
    if conntrack_growth == 0:
        return (f"UDP queries to {addr} were lost, but {conntrack_note}: not the conntrack "
                "race. Look for loss on the path (firewall rules, rate limits, an "
                "overloaded resolver)." + tcp + " `options use-vc` in the pods' dnsConfig "
                "moves lookups to TCP meanwhile." + cache)
    return (f"UDP queries to {addr} were lost ({conntrack_note})." + tcp + " If "
            "insert_failed grows, it is the conntrack race: run NodeLocal DNSCache, and add "
            "`options single-request-reopen` (or `use-vc`) to the pods' dnsConfig meanwhile; "
            "otherwise look for loss on the path or an overloaded resolver." + cache)


def _where(origins: Sequence[str]) -> str:
    names = {"resolv.conf": "/etc/resolv.conf", "kubelet": "kubelet clusterDNS",
             "node-local": "the node-local cache", "config": "dns.resolvers",
             GLIBC_DEFAULT_ORIGIN: "/etc/resolv.conf (add a nameserver line)"}
    return " and ".join(names.get(o, o) for o in origins) or "the resolver list"


# --- node-local cache ----------------------------------------------------------------------

def _contains(networks: Sequence[str], address: str) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    for net in networks:
        try:
            if ip in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


def _has_port(ranges: Sequence[tuple[int, int]], port: int) -> bool:
    return not ranges or any(low <= port <= high for low, high in ranges)


def notrack_coverage(rules: Sequence[NotrackRule], address: str) -> dict[str, list[str]]:
    """protocol -> rules that take queries to ``address`` port 53 out of conntrack.

    Queries from pods arrive through the prerouting hook; a rule in a regular chain (no
    hook) is counted too, since iptables-nft user chains are reached by jumps.
    """
    family = "ip6" if ":" in address else "ip"
    out: dict[str, list[str]] = {"udp": [], "tcp": []}
    for rule in rules:
        if rule.family not in (family, "inet") or rule.hook not in ("prerouting", None):
            continue
        if not rule.daddr or not _contains(rule.daddr, address):
            continue
        if not _has_port(rule.dport, 53):
            continue
        for proto in out:
            if not rule.protocols or proto in rule.protocols:
                out[proto].append(describe_rule(rule))
    return out


def describe_rule(rule: NotrackRule) -> str:
    parts = [f"{rule.family} {rule.table} {rule.chain}"]
    if rule.daddr:
        parts.append("daddr " + ",".join(rule.daddr))
    if rule.saddr:
        parts.append("saddr " + ",".join(rule.saddr))
    if rule.protocols:
        parts.append("/".join(rule.protocols))
    if rule.dport:
        parts.append("dport " + ",".join(_ports(r) for r in rule.dport))
    if rule.sport:
        parts.append("sport " + ",".join(_ports(r) for r in rule.sport))
    parts.append("notrack" if rule.exact else "CT target (iptables-nft)")
    return " ".join(parts)


def _ports(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


def check_nodelocal(n: NodeLocalDns) -> CheckResult:
    addr = n.address
    kubelet = n.kubelet
    points = kubelet is not None and addr in kubelet.cluster_dns
    coverage = notrack_coverage(n.notrack, addr) if n.notrack is not None else None
    evidence: dict[str, Any] = {
        "address": addr,
        "answering": n.answering,
        "answer": n.answer_detail,
        "address_on_local_interface": n.assigned,
        "kubelet_config": kubelet.path if kubelet else "none found",
        "kubelet_cluster_dns": list(kubelet.cluster_dns) if kubelet else [],
        "kubelet_problem": kubelet.problem if kubelet else None,
        "kubelet_points_at_cache": points,
        "notrack_rules_for_address": coverage,
        "notrack_rules_all": [describe_rule(r) for r in n.notrack or ()],
        "problems": dict(n.problems),
        "note": "rules made with iptables-legacy are not visible to nft "
                "(`iptables-legacy -t raw -S`)",
    }
    if kubelet is not None and not points and kubelet.cluster_dns:
        evidence["kubelet_note"] = (
            "kubelet clusterDNS does not name the cache: fine in kube-proxy iptables mode "
            "(node-local-dns also listens on the kube-dns service IP), not in IPVS mode")
    if not n.answering:
        if points:
            return CheckResult(
                id=NODELOCAL_ID, status=Status.CRITICAL,
                summary=(f"kubelet clusterDNS sends pods to {addr}, but nothing answers DNS "
                         f"there ({n.answer_detail})"),
                observed="not answering", limit="answering",
                fix=("Check the node-local-dns pod on this node (`kubectl -n "
                                "kube-system get pods -l k8s-app=node-local-dns -o wide`) "
                                "and its interface (`ip addr show nodelocaldns`)."),
                evidence=evidence)
        if n.assigned:
            # the cache's interface outlived the cache: in kube-proxy iptables mode it also
            # holds the kube-dns service IP, so pods' queries die on this node
            return CheckResult(
                id=NODELOCAL_ID, status=Status.WARNING,
                summary=(f"{addr} is on a local interface but nothing answers DNS there "
                         f"({n.answer_detail}): a node-local cache that stopped?"),
                observed="not answering", limit="answering",
                fix=("Check the node-local-dns pod on this node; if the cache is "
                                "gone for good, delete its interface (`ip link del "
                                "nodelocaldns`) so the kube-dns service IP is not answered "
                                "locally by nothing."),
                evidence=evidence)
        return CheckResult(
            id=NODELOCAL_ID, status=Status.OK,
            summary=f"no node-local DNS cache at {addr} ({n.answer_detail})",
            observed="not answering", evidence=evidence)
    if n.assigned is False:
        return CheckResult(
            id=NODELOCAL_ID, status=Status.OK,
            summary=(f"a DNS cache answers at {addr}, but {addr} is not an address of this "
                     "network namespace: its NOTRACK rules live where it runs and are not "
                     "judged here"),
            observed="answering elsewhere", evidence=evidence)
    if coverage is None:
        return CheckResult(
            id=NODELOCAL_ID, status=Status.UNKNOWN,
            summary=(f"a node-local DNS cache answers at {addr}; its NOTRACK rules cannot "
                     f"be read: {n.problems.get('nft', 'ruleset unreadable')}"),
            observed="answering", evidence=evidence)
    missing = [p for p in ("udp", "tcp") if not coverage[p]]
    use = ("kubelet clusterDNS points at it" if points
           else "kubelet clusterDNS does not point at it" if kubelet
           else "no kubelet config read")
    if missing:
        restore = ChangeSet((NotrackChange(
            address=addr, protocols=tuple(missing),
            reason=f"the node-local cache at {addr} answers without NOTRACK rules"),))
        return CheckResult(
            id=NODELOCAL_ID, status=Status.WARNING,
            summary=(f"node-local DNS cache answers at {addr} but the raw-table NOTRACK "
                     f"rules for {'/'.join(p.upper() for p in missing)} port 53 are missing: "
                     f"its queries go through conntrack again ({use})"),
            observed="NOTRACK missing: " + ",".join(missing), limit="NOTRACK for udp,tcp",
            fix=(
                "node-cache re-adds these rules every few seconds while it runs (kubernetes/"
                "dns cmd/node-cache), so rules that stay missing mean it is not running on "
                "this node, runs with -setupiptables=false, or writes them to the other "
                "iptables backend (see `iptables-legacy -t raw -S`). Restart the "
                "node-local-dns pod on this node; by hand: ", restore, "."),
            evidence=evidence)
    return CheckResult(
        id=NODELOCAL_ID, status=Status.OK,
        summary=(f"node-local DNS cache answers at {addr}; NOTRACK rules keep UDP and TCP "
                 f"port 53 out of conntrack; {use}"),
        observed="answering, NOTRACK present", evidence=evidence)
