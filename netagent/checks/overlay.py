"""``overlay.<device>``: does every other node have a complete path through the VXLAN device?

flanneld programs three entries per remote node (flannel ``backend/vxlan/vxlan_network.go``):
a PERMANENT neighbour (peer subnet ``.0`` -> its VtepMAC), a PERMANENT FDB entry (VtepMAC ->
its public IP) and an onlink route (peer /24 via that ``.0``). Calico does the same per remote
VTEP, with routes per IPAM block. A route whose gateway has no neighbour, or a neighbour whose
MAC has no FDB entry, is a subnet this node cannot reach: the device has learning off, so
nothing fills the gap until the plugin re-adds it. The expected set comes from the nodes'
annotations when the node list was read, else from the node count (nodes - 1).
The entries each CNI plugin adds: docs/design.md §2.3.

Also here: ``cluster.nodes``, reported only when the cluster source runs without the overlay
(the overlay checks carry the node count and where it came from otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from netagent.config import Config
from netagent.model import (
    CheckResult,
    ClusterInfo,
    KernelVersion,
    NodePeer,
    Observations,
    OverlaySnapshot,
    Status,
    VxlanDevice,
)

SOURCE = "overlay"
CLUSTER = "cluster"
ZERO_MAC = "00:00:00:00:00:00"
NUD_PERMANENT = 0x80
NUD_NOARP = 0x40
LIST_AT_MOST = 20  # names shown in a summary or evidence list
RESTART = {
    "flannel": ("kubectl -n kube-flannel delete pod -l app=flannel "
                "--field-selector spec.nodeName={node} "
                "(namespace kube-system on older installs)"),
    "calico": ("kubectl -n calico-system delete pod -l k8s-app=calico-node "
               "--field-selector spec.nodeName={node} "
               "(namespace kube-system on manifest installs)"),
}
PODCIDR_NOTE = ("spec.podCIDR is not node metadata, so peers are matched by VTEP MAC and "
                "address, not by subnet")


@dataclass(frozen=True)
class ClusterView:
    """What the checks know about the cluster: a count, maybe the nodes, or why not."""

    nodes: int | None
    source: str
    peers: tuple[NodePeer, ...] | None = None

    @staticmethod
    def of(obs: Observations, config: Config) -> ClusterView:
        info = obs.get(CLUSTER, ClusterInfo)
        if info is not None:
            source = info.source + (f"; {info.note}" if info.note else "")
            return ClusterView(info.nodes, source, info.peers)
        if config.nodes is not None:
            return ClusterView(config.nodes, "configuration (--nodes or 'nodes:')")
        why = obs.errors.get(CLUSTER) or ("the cluster source was not read: add --only cluster "
                                          "with API access, or pass --nodes N")
        return ClusterView(None, why)


@dataclass(frozen=True)
class Endpoint:
    """A remote node as its annotations say the device should hold it."""

    node: str
    mac: str
    dst: str | None  # where the FDB entry must send
    neighbour_ip: str | None  # Calico names the tunnel address; flannel's needs podCIDR


@dataclass
class Analysis:
    """The device's tables cross-checked with each other and with the cluster."""

    fdb_entries: int = 0
    fdb_permanent: int = 0
    flood_entries: int = 0
    neighbours: int = 0
    neighbours_permanent: int = 0
    neighbours_noarp: int = 0
    routes: int = 0  # routes via a gateway: one per peer subnet (flannel) or block (Calico)
    routes_direct: int = 0  # the device's own connected routes (an IPv6 link has fe80::/64)
    peers_complete: int = 0
    peers_expected: int | None = None
    peers_missing: int | None = None
    expected_from: str = ""
    self_node: str | None = None
    missing: list[str] = field(default_factory=list)  # "node-3: no FDB entry"
    wrong_destination: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    extra: int = 0
    routes_without_neighbour: list[str] = field(default_factory=list)
    neighbours_without_fdb: list[str] = field(default_factory=list)
    fdb_without_neighbour: list[str] = field(default_factory=list)
    neighbours_without_route: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def judge(obs: Observations, config: Config) -> list[CheckResult]:
    return evaluate(obs, config)


def judge_cluster(obs: Observations, config: Config) -> list[CheckResult]:
    return evaluate_cluster(obs, config)


def evaluate(obs: Observations, config: Config) -> list[CheckResult]:
    snap = obs.get(SOURCE, OverlaySnapshot)
    if snap is None:
        reason = obs.errors.get(SOURCE, "the overlay source was not read")
        return [CheckResult(id="overlay", status=Status.UNKNOWN,
                            summary=f"VXLAN overlay: {reason}")]
    if not snap.devices:
        return [CheckResult(id="overlay", status=Status.OK,
                            summary=f"no VXLAN device in network namespace {snap.namespace}: "
                                    "nothing to check")]
    cluster = ClusterView.of(obs, config)
    return [check_device(dev, cluster=cluster, kernel=snap.kernel) for dev in snap.devices]


def evaluate_cluster(obs: Observations, config: Config) -> list[CheckResult]:
    """``cluster.nodes``, only when no overlay check will say the same."""
    if SOURCE in obs.current or SOURCE in obs.errors:
        return []
    info = obs.get(CLUSTER, ClusterInfo)
    if info is None:
        reason = obs.errors.get(CLUSTER, "the cluster source was not read")
        return [CheckResult(id="cluster.nodes", status=Status.UNKNOWN,
                            summary=f"cluster size: {reason}")]
    evidence: dict[str, Any] = {"source": info.source}
    if info.note:
        evidence["note"] = info.note
    if info.peers is not None:
        evidence["nodes_listed"] = len(info.peers)
    return [CheckResult(id="cluster.nodes", status=Status.OK,
                        summary=f"{info.nodes} nodes (from {info.source})",
                        observed=info.nodes, evidence=evidence)]


def analyse(dev: VxlanDevice, cluster: ClusterView) -> Analysis:
    """Pure cross-check of one device's FDB, neighbours and routes (all must be read)."""
    assert dev.fdb is not None and dev.neighbours is not None and dev.routes is not None
    a = Analysis()
    fdb: dict[str, set[str]] = {}
    for e in dev.fdb:
        if e.mac == ZERO_MAC:
            a.flood_entries += 1
        elif e.dst is not None:
            fdb.setdefault(e.mac, set()).add(e.dst)
    a.fdb_entries = len(dev.fdb)
    a.fdb_permanent = sum(1 for e in dev.fdb if e.state & NUD_PERMANENT)
    # NOARP entries are the kernel's own (multicast such as ff02::16 on an IPv6 link):
    # no plugin adds them, no peer is behind them. `ip neigh show` hides them too.
    peers_side = [n for n in dev.neighbours if n.mac and n.state != NUD_NOARP]
    neigh = {n.ip: n.mac for n in peers_side if n.mac}
    by_mac: dict[str, list[str]] = {}
    for ip, mac in neigh.items():
        by_mac.setdefault(mac, []).append(ip)
    a.neighbours = len(peers_side)
    a.neighbours_noarp = len(dev.neighbours) - len(peers_side)
    a.neighbours_permanent = sum(1 for n in peers_side if n.state & NUD_PERMANENT)
    a.routes = sum(1 for r in dev.routes if r.gateway)
    a.routes_direct = len(dev.routes) - a.routes
    gateways = {r.gateway for r in dev.routes if r.gateway}

    a.routes_without_neighbour = [f"{r.dst} via {r.gateway}" for r in dev.routes
                                  if r.gateway and r.gateway not in neigh]
    if not a.flood_entries:  # an all-zeros entry floods unknown MACs somewhere: not lost
        a.neighbours_without_fdb = [f"{ip} -> {mac}" for ip, mac in neigh.items()
                                    if mac not in fdb]
    a.fdb_without_neighbour = [f"{mac} -> {','.join(sorted(d))}" for mac, d in fdb.items()
                               if mac not in by_mac]
    a.neighbours_without_route = [ip for ip in neigh if ip not in gateways]
    complete = {mac for mac in fdb if any(ip in gateways for ip in by_mac.get(mac, ()))}
    a.peers_complete = len(complete)

    endpoints = _endpoints(dev.cni, dev.family, cluster.peers)
    if endpoints:
        _against_annotations(a, dev, endpoints, fdb, neigh, by_mac, gateways)
        a.expected_from = f"node annotations ({cluster.source})"
        unannotated = len(cluster.peers or ()) - len(endpoints)
        if unannotated:
            a.notes.append(f"{unannotated} nodes carry no {dev.cni} VXLAN annotations (not "
                           "registered yet, or another backend): no entries expected for them")
    elif dev.cni in RESTART and cluster.nodes is not None:
        a.peers_expected = max(0, cluster.nodes - 1)
        a.peers_missing = max(0, a.peers_expected - a.peers_complete)
        a.extra = max(0, a.peers_complete - a.peers_expected)
        a.expected_from = f"node count {cluster.nodes} - 1 ({cluster.source})"
        if cluster.peers is not None:
            a.notes.append(f"no node carries {dev.cni} VXLAN annotations: expected set from "
                           "the count")
    return a


def _endpoints(cni: str, family: str, peers: tuple[NodePeer, ...] | None) -> list[Endpoint]:
    out = []
    v6 = family == "ipv6"
    for p in peers or ():
        if cni == "flannel":
            mac = p.flannel_vtep_mac_v6 if v6 else p.flannel_vtep_mac
            if mac:
                out.append(Endpoint(p.name, mac,
                                    p.flannel_public_ipv6 if v6 else p.flannel_public_ip, None))
        elif cni == "calico":
            mac = p.calico_vxlan_mac_v6 if v6 else p.calico_vxlan_mac
            if mac:
                out.append(Endpoint(
                    p.name, mac, p.calico_ipv6_address if v6 else p.calico_ipv4_address,
                    p.calico_vxlan_tunnel_addr_v6 if v6 else p.calico_vxlan_tunnel_addr))
    return out


def _against_annotations(a: Analysis, dev: VxlanDevice, endpoints: list[Endpoint],
                         fdb: dict[str, set[str]], neigh: dict[str, str],
                         by_mac: dict[str, list[str]], gateways: set[str]) -> None:
    own = [e for e in endpoints if e.mac == (dev.mac or "").lower()
           or (e.dst is not None and e.dst == dev.local)]
    if own:
        a.self_node = own[0].node
    else:
        a.notes.append(f"no node's annotations name this device's MAC {dev.mac} or address "
                       f"{dev.local} (the plugin may have restarted with a new VTEP)")
    own_macs = {e.mac for e in own}
    remote = [e for e in endpoints if e not in own and e.mac not in own_macs]
    a.peers_expected = len(remote)
    missing = 0
    for e in remote:
        why = _why_missing(e, fdb, neigh, by_mac, gateways)
        if e.mac in fdb and e.dst is not None and e.dst not in fdb[e.mac]:
            a.wrong_destination.append(f"{e.node}: FDB sends {e.mac} to "
                                       f"{','.join(sorted(fdb[e.mac]))}, not {e.dst}")
        if why:
            missing += 1
            a.missing.append(f"{e.node}: {why}")
    a.peers_missing = missing
    known = {e.mac for e in endpoints}
    for mac in sorted((set(fdb) | set(by_mac)) - known):
        where = ",".join(sorted(fdb.get(mac, ()))) or "no FDB entry"
        ips = ",".join(sorted(by_mac.get(mac, ()))) or "no neighbour"
        a.stale.append(f"{mac} (FDB -> {where}; neighbour {ips})")


def _why_missing(e: Endpoint, fdb: dict[str, set[str]], neigh: dict[str, str],
                 by_mac: dict[str, list[str]], gateways: set[str]) -> str:
    reasons = []
    if e.mac not in fdb:
        reasons.append(f"no FDB entry for {e.mac}")
    elif e.dst is not None and e.dst not in fdb[e.mac]:
        reasons.append(f"FDB entry for {e.mac} points at {','.join(sorted(fdb[e.mac]))} "
                       f"instead of {e.dst}")
    if e.neighbour_ip is not None and neigh.get(e.neighbour_ip) != e.mac:
        got = neigh.get(e.neighbour_ip)
        reasons.append(f"neighbour {e.neighbour_ip} is "
                       f"{'missing' if got is None else 'for ' + got}, not {e.mac}")
    ips = by_mac.get(e.mac, [])
    if not ips:
        if e.neighbour_ip is None:
            reasons.append(f"no neighbour entry for {e.mac}")
    elif not any(ip in gateways for ip in ips):
        reasons.append(f"no route via {','.join(sorted(ips))}")
    return "; ".join(reasons)


def check_device(dev: VxlanDevice, *, cluster: ClusterView, kernel: KernelVersion
                 ) -> CheckResult:
    check_id = f"overlay.{dev.name}"
    label = f"{dev.name} ({dev.cni})" if dev.cni else dev.name
    base: dict[str, Any] = {
        "device": dev.name, "cni": dev.cni or "unknown", "family": dev.family, "vni": dev.vni,
        "local": dev.local, "port": dev.port, "learning": dev.learning, "up": dev.up,
    }
    if dev.cni == "cilium":
        return CheckResult(
            id=check_id, status=Status.OK,
            summary=f"{label}: not applicable: Cilium keeps its tunnel endpoints in BPF maps, "
                    "not in the FDB (see `cilium bpf tunnel list`)",
            evidence=base)
    if dev.fdb is None or dev.neighbours is None or dev.routes is None:
        reasons = "; ".join(dev.problems.values()) or "tables unreadable"
        return CheckResult(id=check_id, status=Status.UNKNOWN,
                           summary=f"{label}: cannot be judged: {reasons}", evidence=base)
    a = analyse(dev, cluster)
    evidence = {**base, **_evidence(a, cluster, kernel, dev)}
    status, parts = _judge(a, dev, cluster)
    summary = f"{label}: " + "; ".join(parts)
    return CheckResult(
        id=check_id, status=status, summary=summary,
        observed=a.peers_complete, limit=a.peers_expected,
        fix=_recommendation(a, dev, kernel, status),
        evidence=evidence,
    )


def _judge(a: Analysis, dev: VxlanDevice, cluster: ClusterView) -> tuple[Status, list[str]]:
    tables = f"FDB {a.fdb_entries}, neighbours {a.neighbours}, routes {a.routes}"
    critical: list[str] = []
    warning: list[str] = []
    if not dev.up:
        critical.append("device is down")
    if a.missing:
        critical.append(f"{len(a.missing)} of {a.peers_expected} peers missing or incomplete: "
                        + _some(a.missing))
    elif a.peers_missing:
        critical.append(f"{a.peers_missing} of {a.peers_expected} peers missing "
                        f"(only {a.peers_complete} complete)")
    if a.wrong_destination and not a.missing:
        critical.append("wrong FDB destinations: " + _some(a.wrong_destination))
    if a.routes_without_neighbour and not a.missing:
        critical.append(f"{len(a.routes_without_neighbour)} routes whose gateway has no "
                        f"neighbour entry: " + _some(a.routes_without_neighbour))
    if a.neighbours_without_fdb and not a.missing:
        critical.append(f"{len(a.neighbours_without_fdb)} neighbours whose MAC has no FDB "
                        f"entry: " + _some(a.neighbours_without_fdb))
    if a.stale:
        warning.append(f"{len(a.stale)} stale entries for MACs no node has: " + _some(a.stale))
    if a.extra:
        warning.append(f"{a.extra} more peers than nodes - 1 (entries for nodes that left, or "
                       "a node count that is out of date)")
    if not a.stale and not a.missing:
        if a.fdb_without_neighbour:
            warning.append(f"{len(a.fdb_without_neighbour)} FDB entries without a neighbour: "
                           + _some(a.fdb_without_neighbour))
        if a.neighbours_without_route and dev.cni == "flannel":
            warning.append(f"{len(a.neighbours_without_route)} neighbours no route uses: "
                           + _some(a.neighbours_without_route))
    headline = (f"{a.peers_complete} of {a.peers_expected} peers complete ({tables})"
                if a.peers_expected is not None else f"{a.peers_complete} peers ({tables})")
    if critical:
        return Status.CRITICAL, [*critical, *warning, tables]
    if warning:
        return Status.WARNING, [headline, *warning]
    if a.peers_expected is None:
        if dev.cni in RESTART:
            why = f"node count unknown: {cluster.source}"
        else:
            why = ("not a device netagent knows the expected peers of (flannel.*, "
                   "vxlan.calico)")
        return Status.UNKNOWN, [f"{headline}, consistent with each other", why]
    return Status.OK, [headline]


def _evidence(a: Analysis, cluster: ClusterView, kernel: KernelVersion, dev: VxlanDevice
              ) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "fdb_entries": a.fdb_entries,
        "fdb_permanent": a.fdb_permanent,
        "neighbours": a.neighbours,
        "neighbours_permanent": a.neighbours_permanent,
        "neighbours_noarp": a.neighbours_noarp,
        "routes": a.routes,
        "routes_direct": a.routes_direct,
        "peers_complete": a.peers_complete,
        "peers_expected": a.peers_expected,
        "peers_missing": a.peers_missing,
        "expected_from": a.expected_from or None,
        "cluster_nodes": cluster.nodes,
        "cluster_source": cluster.source,
    }
    if a.flood_entries:
        ev["flood_entries"] = a.flood_entries
    if a.self_node:
        ev["this_node"] = a.self_node
    for key in ("missing", "wrong_destination", "stale", "routes_without_neighbour",
                "neighbours_without_fdb", "fdb_without_neighbour", "neighbours_without_route"):
        values: list[str] = getattr(a, key)
        if values:
            ev[key] = values[:LIST_AT_MOST] + (
                [f"... {len(values) - LIST_AT_MOST} more"] if len(values) > LIST_AT_MOST else [])
    if a.extra:
        ev["extra_peers"] = a.extra
    notes = list(a.notes)
    if dev.cni == "flannel" and cluster.peers is not None:
        notes.append(PODCIDR_NOTE)
    if not kernel.at_least(5, 0) and a.neighbours_permanent:
        notes.append(f"kernel {kernel.release} counts these {a.neighbours_permanent} "
                       "PERMANENT neighbour entries against gc_thresh3 (exempt since 5.0)")
    if notes:
        ev["notes"] = notes
    return ev


def _recommendation(a: Analysis, dev: VxlanDevice, kernel: KernelVersion, status: Status) -> str:
    if status in (Status.OK, Status.UNKNOWN):
        return ""
    node = a.self_node or "$NODE_NAME"
    look = (f"Look: bridge fdb show dev {dev.name}; ip neigh show dev {dev.name}; "
            f"ip route show dev {dev.name}")
    restart = RESTART.get(dev.cni)
    lines = []
    if status is Status.CRITICAL:
        if restart:
            lines.append(f"Restart {dev.cni} on this node so it re-adds every peer: "
                         + restart.format(node=node))
        else:
            lines.append(f"Re-create the missing entries of {dev.name} (whatever manages it).")
        lines.append("Find out why they went first: `dmesg | grep 'neighbor table overflow'` "
                     "and the neighbour.ipv4 check; raise net.ipv4.neigh.default.gc_thresh1/2/3 "
                     "before restarting or the entries are lost again")
        if not kernel.at_least(5, 0):
            lines.append(f"On kernel {kernel.release} each peer's PERMANENT neighbour counts "
                         "against gc_thresh3: size it above nodes + pods on this node")
        if dev.cni == "flannel" and a.peers_missing:
            lines.append("If flannel runs with DirectRouting, peers on this node's own subnet "
                         "are routed without VXLAN entries and show here as missing")
    else:
        if restart:
            lines.append(f"Stale or extra entries: restarting {dev.cni} on this node rebuilds "
                         "the tables from the node list: " + restart.format(node=node))
        lines.append(f"or remove one by hand: bridge fdb del MAC dev {dev.name} dst IP; "
                     f"ip neigh del IP dev {dev.name}")
    lines.append(look)
    return "\n".join(lines)


def _some(items: Iterable[str], limit: int = 5) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
