"""Immutable records shared by every layer.

Pure data: no I/O, no imports beyond the standard library. Parsers build these records,
sources return them, checks read them, reports and the exporter render them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar


class Status(enum.IntEnum):
    """Check status; values are the Nagios exit codes ``netagent check`` returns."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @staticmethod
    def worst(statuses: list[Status]) -> Status:
        """The status of a whole report: UNKNOWN only when nothing worse is known."""
        known = [s for s in statuses if s is not Status.UNKNOWN]
        if known and max(known) > Status.OK:
            return max(known)
        if Status.UNKNOWN in statuses:
            return Status.UNKNOWN
        return Status.OK


# --- proposed changes: what a fix would write, as data ------------------------------------


@dataclass(frozen=True)
class SysctlChange:
    """Set a sysctl (``net.ipv4.neigh.default.gc_thresh3``) from ``current`` to ``target``."""

    key: str
    current: int | None
    target: int
    reason: str
    kind: str = "sysctl"


@dataclass(frozen=True)
class ModuleParameterChange:
    """Set a kernel module's parameter (``nf_conntrack hashsize``), now through its file in
    ``/sys/module/<module>/parameters`` and at the next load through ``modprobe.d``."""

    module: str
    parameter: str
    current: int | None
    target: int
    reason: str
    kind: str = "module_parameter"

    @property
    def path(self) -> str:
        return f"/sys/module/{self.module}/parameters/{self.parameter}"


@dataclass(frozen=True)
class NotrackChange:
    """Raw-table NOTRACK rules for DNS to and from ``address`` on ``port``, per protocol, in
    prerouting (to the address) and output (from it)."""

    address: str
    protocols: tuple[str, ...]
    reason: str
    port: int = 53
    kind: str = "notrack"


Change = SysctlChange | ModuleParameterChange | NotrackChange


@dataclass(frozen=True)
class ChangeSet:
    """Changes made together: the report shows them as the commands that make them, the
    sysctls persisted in ``/etc/sysctl.d/<conf_file>``, and ``note`` as a last comment."""

    changes: tuple[Change, ...]
    conf_file: str = ""
    note: str = ""


# What a check advises: words and change sets, shown in this order, concatenated.
FixPart = str | ChangeSet


@dataclass(frozen=True)
class CheckResult:
    """One finding: what was seen, against which limit, and what to do about it.

    ``observed`` and ``limit`` are the headline figures (numbers or short strings);
    ``evidence`` carries the supporting detail shown with ``-v`` and in JSON. ``fix`` is the
    advice: words, and the changes it proposes as records (``changes``), which the reports
    render as commands; a plain string is advice in words only.
    """

    id: str
    status: Status
    summary: str
    observed: Any = None
    limit: Any = None
    fix: tuple[FixPart, ...] | str = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.fix, str):
            object.__setattr__(self, "fix", (self.fix,) if self.fix else ())

    @property
    def changes(self) -> tuple[Change, ...]:
        return tuple(c for part in self.fix if isinstance(part, ChangeSet)
                     for c in part.changes)

    @property
    def advice(self) -> str:
        """The words of the fix, without the changes' commands."""
        return "".join(part for part in self.fix if isinstance(part, str))


@dataclass(frozen=True)
class Forecast:
    """When a table will be full (``netagent.forecast``).

    ``method`` is "trend" (the agent's history: least squares and Holt agreeing) or
    "short-term" (``netagent check``: the rate over its interval). ``rate_per_second`` is the
    growth the forecast uses and ``seconds_to_full`` the time left at that growth; both are
    None when the table is not forecast to fill, ``held`` saying why when a guard held the
    forecast back. ``level`` is the status the time earns against ``forecast.*_seconds``.
    For the neighbour tables, ``nodes_until_full`` is how many more nodes the cluster can
    grow by before this node's table is full at today's entries per node, and
    ``seconds_to_full_by_nodes`` when the cluster's node growth reaches that.
    """

    table: str
    count: float
    limit: int
    method: str
    span_seconds: float
    samples: int
    rate_per_second: float | None = None
    seconds_to_full: float | None = None
    level: Status = Status.OK
    held: str = ""
    estimates: Mapping[str, float] = field(default_factory=dict)
    nodes: int | None = None
    nodes_until_full: int | None = None
    node_growth_per_second: float | None = None
    seconds_to_full_by_nodes: float | None = None


@dataclass(frozen=True)
class SourceRun:
    """How one source's collection went."""

    name: str
    ok: bool
    duration_seconds: float
    error: str | None = None
    traceback: str | None = None  # a bug's, shown by `netagent check -v`


@dataclass(frozen=True)
class Report:
    node: str
    kernel: str
    checks: tuple[CheckResult, ...]
    sources: tuple[SourceRun, ...]

    @property
    def status(self) -> Status:
        return Status.worst([c.status for c in self.checks])


@dataclass(frozen=True)
class KernelVersion:
    """The running kernel's release, compared as (major, minor, patch)."""

    release: str
    major: int
    minor: int
    patch: int = 0

    def at_least(self, major: int, minor: int, patch: int = 0) -> bool:
        return (self.major, self.minor, self.patch) >= (major, minor, patch)


# --- neighbour tables -------------------------------------------------------------------

FAMILIES = ("ipv4", "ipv6")
STAT_FILE = {"ipv4": "arp_cache", "ipv6": "ndisc_cache"}


class NeighbourKey(NamedTuple):
    """What the GC rules look at in one neighbour entry (see parse.neighbours).

    A dump is tallied by these keys, so a table of any size folds into a handful of them.
    """

    ifindex: int
    state: int  # NUD_* bit
    flags: int  # NTF_* bits of ndm_flags
    flags_ext: int  # NTF_EXT_* bits of NDA_FLAGS_EXT (Linux 5.16+), else 0
    referenced: bool | None  # ndm_refcnt > 0 (NDA_CACHEINFO); None without cache info
    recently_updated: bool | None  # ndm_updated within forced GC's 5 s; None likewise


@dataclass(frozen=True)
class NeighbourStats:
    """``/proc/net/stat/{arp,ndisc}_cache``: global ``entries`` and per-CPU sums."""

    entries: int
    counters: Mapping[str, int]

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)


@dataclass(frozen=True)
class NeighbourLimits:
    """``net.ipv{4,6}.neigh.default.*``: the thresholds of one family's table."""

    gc_thresh1: int
    gc_thresh2: int
    gc_thresh3: int
    gc_interval: int | None = None  # seconds
    gc_stale_time: int | None = None  # seconds


@dataclass(frozen=True)
class NamespaceNeighbours:
    """One family's neighbours in one network namespace, already counted."""

    namespace: str
    total: int
    counted: int  # entries that count against gc_thresh* on this kernel
    unreclaimable: int  # counted entries forced GC cannot free right now
    by_state: Mapping[str, int]
    by_device: Mapping[str, int]
    by_flag: Mapping[str, int]


@dataclass(frozen=True)
class NeighbourTable:
    """One family's table across every network namespace that could be read."""

    family: str
    namespaces: tuple[NamespaceNeighbours, ...]  # those holding entries of this family
    namespaces_read: int
    unreadable: Mapping[str, str]  # namespace (or /proc path) -> why it could not be read

    @property
    def exact(self) -> bool:
        return not self.unreadable

    @property
    def total(self) -> int:
        return sum(ns.total for ns in self.namespaces)

    @property
    def counted(self) -> int:
        return sum(ns.counted for ns in self.namespaces)

    @property
    def unreclaimable(self) -> int:
        return sum(ns.unreclaimable for ns in self.namespaces)

    def by_state(self) -> dict[str, int]:
        return _merge(ns.by_state for ns in self.namespaces)

    def by_flag(self) -> dict[str, int]:
        return _merge(ns.by_flag for ns in self.namespaces)


@dataclass(frozen=True)
class NeighbourObservation:
    """Everything read about one family's neighbour table at one moment.

    Each part is ``None`` when it could not be read; ``problems`` says why.
    """

    family: str
    kernel: KernelVersion
    stats: NeighbourStats | None
    limits: NeighbourLimits | None
    table: NeighbourTable | None
    problems: Mapping[str, str] = field(default_factory=dict)
    monotonic: float = 0.0


@dataclass(frozen=True)
class NeighbourSnapshot:
    """What the ``neighbours`` source returns: one observation per family."""

    families: Mapping[str, NeighbourObservation]


def _merge(parts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, 0) + value
    return out


# --- overlay (VXLAN) devices and the cluster they join ----------------------------------

class FdbEntry(NamedTuple):
    """One forwarding entry of a VXLAN device (``bridge fdb show dev flannel.1``).

    On a VXLAN device each entry maps an inner MAC (a remote VTEP) to the outer IP packets
    are sent to (NDA_DST). One MAC can have several entries (``bridge fdb append``).
    """

    mac: str
    dst: str | None  # remote VTEP IP, None when the entry has no destination
    state: int  # NUD_* bit; flannel and Calico add PERMANENT
    flags: int  # NTF_* bits (NTF_SELF on entries the device itself holds)


class OverlayNeighbour(NamedTuple):
    """One neighbour entry on a VXLAN device (``ip neigh show dev flannel.1``)."""

    ip: str
    mac: str | None
    state: int


class OverlayRoute(NamedTuple):
    """One main-table route out of a VXLAN device (``ip route show dev flannel.1``)."""

    dst: str  # prefix, e.g. "10.244.3.0/24"
    gateway: str | None
    onlink: bool


@dataclass(frozen=True)
class VxlanDevice:
    """One VXLAN link and the three tables that make its peers reachable.

    ``cni`` is the plugin the name belongs to ("flannel" for ``flannel.*``, "calico" for
    ``vxlan.calico``, "cilium" for ``cilium_vxlan``) or "" for any other device. ``family``
    is the inner address family its neighbours and routes are read in ("ipv6" for
    ``flannel-v6.1`` and ``vxlan-v6.calico``). A table is ``None`` when it could not be read;
    ``problems`` says why.
    """

    name: str
    ifindex: int
    mac: str | None
    vni: int | None
    local: str | None  # the underlay address packets leave from (IFLA_VXLAN_LOCAL)
    port: int | None  # UDP destination port (8472 for flannel, 4789 the IANA port)
    learning: bool | None
    up: bool
    cni: str
    family: str
    fdb: tuple[FdbEntry, ...] | None
    neighbours: tuple[OverlayNeighbour, ...] | None
    routes: tuple[OverlayRoute, ...] | None
    problems: Mapping[str, str] = field(default_factory=dict)

    @property
    def fdb_entries(self) -> int | None:
        """``netagent_overlay_fdb_entries{device}``."""
        return None if self.fdb is None else len(self.fdb)


@dataclass(frozen=True)
class OverlaySnapshot:
    """What the ``overlay`` source returns: every VXLAN device of one network namespace."""

    namespace: str
    kernel: KernelVersion
    devices: tuple[VxlanDevice, ...]


@dataclass(frozen=True)
class NodePeer:
    """What one Kubernetes node's metadata says about its overlay endpoint.

    flannel: ``flannel.alpha.coreos.com/public-ip`` and the ``VtepMAC`` of
    ``flannel.alpha.coreos.com/backend-data`` (``public-ipv6`` and ``backend-v6-data`` for
    ``flannel-v6.1``). Calico: ``projectcalico.org/IPv4Address`` (without its prefix length),
    ``projectcalico.org/IPv4VXLANTunnelAddr`` and ``projectcalico.org/VXLANTunnelMACAddr``
    (``IPv6Address``, ``IPv6VXLANTunnelAddr``, ``VXLANTunnelMACAddrV6``). The pod CIDR
    (``spec.podCIDR``) is not metadata, so a metadata-only list cannot say which /24 a flannel
    peer owns: peers are matched by MAC.
    """

    name: str
    flannel_public_ip: str | None = None
    flannel_vtep_mac: str | None = None
    flannel_backend_type: str | None = None
    calico_ipv4_address: str | None = None
    calico_vxlan_tunnel_addr: str | None = None
    calico_vxlan_mac: str | None = None
    flannel_public_ipv6: str | None = None
    flannel_vtep_mac_v6: str | None = None
    calico_ipv6_address: str | None = None
    calico_vxlan_tunnel_addr_v6: str | None = None
    calico_vxlan_mac_v6: str | None = None


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster's size (``netagent_cluster_nodes``) and, when listed, its nodes' peers.

    ``source`` says where the count came from ("Kubernetes API https://...", or
    "configuration"); ``peers`` is ``None`` when only the count was read.
    """

    nodes: int
    source: str
    peers: tuple[NodePeer, ...] | None = None
    note: str = ""  # e.g. why the API was not used


# --- conntrack ---------------------------------------------------------------------------

# The events exported as netagent_conntrack_events_total{event} (docs/design.md §3).
CONNTRACK_EVENTS = ("insert_failed", "drop", "early_drop", "invalid", "clash_resolve",
                    "search_restart")


@dataclass(frozen=True)
class ConntrackStats:
    """Per-CPU conntrack statistics summed over CPUs, under one set of names.

    ``counters`` holds only the counters this kernel reports, by the names of the netlink
    attributes (``CTA_STATS_*`` lower-cased): a counter the kernel does not have (for
    example ``clash_resolve`` on kernels older than that counter) is absent, not 0.
    ``entries`` is this namespace's table size when the procfs file gave it (netlink
    per-CPU stats do not carry it).
    """

    source: str  # "procfs" (/proc/net/stat/nf_conntrack) or "netlink" (conntrack -S)
    entries: int | None
    counters: Mapping[str, int]
    cpus: int
    layout: str = ""  # which generation of the procfs header, or "netlink"

    def get(self, name: str) -> int | None:
        return self.counters.get(name)


@dataclass(frozen=True)
class ConntrackObservation:
    """One reading of this network namespace's conntrack table.

    ``count`` is per namespace; ``max`` and ``buckets`` are global (one hash table and one
    limit for the whole kernel, writable only in the initial namespace). A part that could
    not be read is ``None`` and ``problems`` says why.
    """

    kernel: KernelVersion
    count: int | None
    max: int | None
    buckets: int | None
    stats: ConntrackStats | None
    namespace: str = ""  # "net:[4026531840]", as readlink /proc/self/ns/net prints it
    problems: Mapping[str, str] = field(default_factory=dict)
    monotonic: float = 0.0


# --- what a collection round hands the checks --------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class Observations:
    """The observations of one collection round, keyed by source name.

    ``baseline`` holds an earlier sample of the same sources (for counters that must be
    turned into rates); ``errors`` says why a source produced nothing.
    """

    current: Mapping[str, Any]
    baseline: Mapping[str, Any] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    # the agent's forecasts by table; None (``netagent check``): the checks take the
    # short-term rate between baseline and current instead
    forecasts: Mapping[str, Forecast] | None = None

    def get(self, name: str, kind: type[T]) -> T | None:
        value = self.current.get(name)
        return value if isinstance(value, kind) else None

    def get_baseline(self, name: str, kind: type[T]) -> T | None:
        value = self.baseline.get(name)
        return value if isinstance(value, kind) else None


# --- DNS ---------------------------------------------------------------------------------

# glibc resolv/resolv.h: RES_TIMEOUT 5 s, RES_DFLRETRY 2 attempts, MAXNS 3 nameservers
RESOLV_TIMEOUT = 5
RESOLV_ATTEMPTS = 2
RESOLV_MAXNS = 3
DNS_MODES = ("parallel", "udp", "tcp")


@dataclass(frozen=True)
class ResolvConf:
    """What glibc would take from ``/etc/resolv.conf``.

    ``ignored`` lists what glibc ignores too (nameservers beyond the third, unknown options,
    malformed lines), so a report can say why a configured nameserver is never asked.
    """

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    timeout: int = RESOLV_TIMEOUT
    attempts: int = RESOLV_ATTEMPTS
    ndots: int = 1
    rotate: bool = False
    single_request: bool = False
    single_request_reopen: bool = False
    use_vc: bool = False
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class KubeletDns:
    """``clusterDNS`` and ``clusterDomain`` of a KubeletConfiguration file.

    ``problem`` says why nothing could be read (file missing, not YAML, not a
    KubeletConfiguration); then ``cluster_dns`` is empty.
    """

    path: str
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class DnsProbe:
    """One name resolved once against one resolver, the way a client in ``mode`` would.

    Modes: ``parallel`` (A and AAAA sent together from one UDP socket, glibc's default),
    ``udp`` (A then AAAA, one at a time: glibc ``options single-request``), ``tcp`` (A then
    AAAA over one connection: ``options use-vc``). ``latency`` is the time until every
    answer arrived or the probe gave up, in seconds. ``tries`` is how many rounds were sent,
    ``timeouts`` how many of them ended in a timeout (``timeouts`` > 0 on an answered probe
    is the delay a pod sees: one lost packet costs a whole resolver timeout).
    """

    resolver: str
    name: str
    mode: str
    latency: float
    answered: bool
    rcode: str | None = None  # worst rcode among the answers (NOERROR when all fine)
    truncated: bool = False
    tries: int = 1
    timeouts: int = 0
    error: str | None = None  # e.g. "connection refused" (ICMP port unreachable)
    # The round's time budget ended the last wait before its timeout did: that wait says
    # nothing about loss (the answer may have been on its way).
    cut: bool = False

    @property
    def protocol(self) -> str:
        return "tcp" if self.mode == "tcp" else "udp"

    @property
    def measured(self) -> bool:
        """The probe ended in an answer, an error or at least one whole timeout: a cut probe
        that had waited out no timeout yet measured nothing, and is left out of statistics."""
        return not self.cut or self.answered or self.timeouts > 0 or self.error is not None

    @property
    def failure(self) -> str | None:
        """The reason label of a failed probe (for ``netagent_dns_probe_failures_total``)."""
        if self.error is not None:  # "connection refused" -> connection_refused
            return self.error.split(":")[0].split(" (")[0].replace(" ", "_")
        if not self.measured:
            return None
        if not self.answered:
            return "timeout"
        if self.rcode not in (None, "NOERROR", "NXDOMAIN"):
            return self.rcode.lower()
        return None


@dataclass(frozen=True)
class ResolverProbes:
    """Every probe sent to one resolver in one round, and where the resolver came from."""

    resolver: str
    origins: tuple[str, ...]  # "resolv.conf", "kubelet", "node-local", "config"
    timeout: float
    attempts: int
    probes: tuple[DnsProbe, ...]
    skipped: int = 0  # probes not sent: the round's time budget was spent


@dataclass(frozen=True)
class NotrackRule:
    """One nftables rule that switches connection tracking off (from ``nft -j list ruleset``).

    Each match field holds the values the rule accepts; an empty tuple means any. ``exact``
    is False for iptables-nft rules, whose ``-j NOTRACK`` (an alias of ``-j CT --notrack``)
    nft can only show as an opaque ``xt`` target named ``CT``.
    """

    family: str
    table: str
    chain: str
    hook: str | None  # None: a regular chain, reached only by a jump
    daddr: tuple[str, ...] = ()  # networks ("169.254.20.10/32"); empty: any
    saddr: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()  # "udp", "tcp"; empty: any
    dport: tuple[tuple[int, int], ...] = ()  # inclusive ranges; empty: any
    sport: tuple[tuple[int, int], ...] = ()
    exact: bool = True


@dataclass(frozen=True)
class NodeLocalDns:
    """What is known about a node-local DNS cache on its link-local address.

    ``answering``: something answered a quick query there (None: not asked). ``assigned``:
    the address is on a local interface (None: unknown). ``notrack`` is None when the
    ruleset could not be read (``problems['nft']`` says why).
    """

    address: str
    answering: bool | None
    answer_detail: str
    assigned: bool | None
    notrack: tuple[NotrackRule, ...] | None
    kubelet: KubeletDns | None
    problems: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DnsObservation:
    """What the ``dns`` source returns: probes per resolver plus node-local DNS awareness.

    For the exporter: every ``probe`` in ``resolvers[*].probes`` is one observation of
    ``netagent_dns_probe_duration_seconds{resolver,protocol,mode}`` (``probe.latency``,
    ``probe.protocol``, ``probe.mode``), and one increment of
    ``netagent_dns_probe_failures_total{resolver,protocol,reason}`` when ``probe.failure``
    is not None (reasons: timeout, connection_refused, host_unreachable, refused,
    servfail, ...).
    """

    resolv_conf_path: str
    resolv_conf: ResolvConf | None
    resolvers: tuple[ResolverProbes, ...]
    nodelocal: NodeLocalDns | None
    duration: float
    budget_seconds: float
    problems: Mapping[str, str] = field(default_factory=dict)


# --- remediation: netagent's own journal, and the node as the planner sees it -----------------


@dataclass(frozen=True)
class KeyRecord:
    """A key netagent wrote: its value before the first write (what rollback restores), the
    value netagent wrote last and when (a different value later means someone else wrote)."""

    original: int | None
    written: int
    at: float  # unix seconds


@dataclass(frozen=True)
class ActionRecord:
    at: float
    key: str
    old: int | None
    new: int
    result: str  # applied | failed | refused
    reason: str


@dataclass(frozen=True)
class Journal:
    """``<state_dir>/journal.json``: what netagent changed, and the keys it left alone."""

    keys: Mapping[str, KeyRecord] = field(default_factory=dict)
    released: Mapping[str, str] = field(default_factory=dict)  # key -> why left alone
    notrack: str | None = None  # the address netagent's nft table covers
    actions: tuple[ActionRecord, ...] = ()


@dataclass(frozen=True)
class NodeFacts:
    """The node as the remediation planner sees it."""

    values: Mapping[str, int | None]  # every managed key -> its value (None: absent)
    set_in_files: Mapping[str, str]  # key -> the administrator's file that sets it
    mem_total_bytes: int | None
    hashsize_writable: bool
    now: float  # unix seconds

    @property
    def initial_namespace(self) -> bool:
        """The neighbour thresholds exist only in the initial network namespace."""
        return self.values.get("net.ipv4.neigh.default.gc_thresh3") is not None

