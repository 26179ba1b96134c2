"""Configuration: YAML -> frozen dataclasses.

Every key has a default, so an empty file (or none) is a valid configuration. An unknown key,
a value of the wrong type or out of range is a ``ConfigError`` that names the key and the
file. Sections are plain dataclasses; the loader walks their fields, so a new setting is one
field with a default and, where it needs one, a range in ``_RANGES``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netagent import catalog
from netagent.errors import ConfigError
from netagent.loaders import LoadError, load_yaml, read_text, shorten


@dataclass(frozen=True)
class NeighbourThresholds:
    warning_ratio: float = 0.80  # of gc_thresh3
    critical_ratio: float = 0.95
    headroom_ratio: float = 0.50  # recommended limits put today's count at most here


@dataclass(frozen=True)
class ConntrackThresholds:
    warning_ratio: float = 0.75  # of nf_conntrack_max
    critical_ratio: float = 0.90
    insert_failed_per_second: float = 1.0  # above this rate conntrack.errors warns
    headroom_ratio: float = 0.50  # recommended nf_conntrack_max puts today's count at most here


@dataclass(frozen=True)
class DnsThresholds:
    p95_warning_seconds: float = 0.5
    p95_critical_seconds: float = 2.0
    timeout_ratio_warning: float = 0.05  # probes that waited out a resolver timeout
    timeout_ratio_critical: float = 0.20
    # probes that ended without a usable answer (an error, SERVFAIL/REFUSED, no answer at
    # all): a resolver failing one protocol (TCP refused) fails ~a third of them
    failure_ratio_warning: float = 0.05
    failure_ratio_critical: float = 0.50
    # the 5-second pattern: answers arriving within this share of k x resolver timeout
    pattern_tolerance: float = 0.10
    pattern_min_probes: int = 2


@dataclass(frozen=True)
class Thresholds:
    neighbour: NeighbourThresholds = field(default_factory=NeighbourThresholds)
    conntrack: ConntrackThresholds = field(default_factory=ConntrackThresholds)
    dns: DnsThresholds = field(default_factory=DnsThresholds)


@dataclass(frozen=True)
class ForecastConfig:
    """The `forecast:` section: time to full from the agent's history (docs/design.md §4.7)."""

    warning_seconds: float = 3600.0  # a table forecast full within this warns
    critical_seconds: float = 900.0  # and within this is critical
    window_seconds: float = 21600.0  # the least-squares slope looks this far back
    min_samples: int = 10  # no forecast from fewer samples since the history (re)started
    min_utilisation: float = 0.25  # no forecast for a table below this share of its limit
    smoothing: float = 0.5  # Holt's level smoothing (alpha)
    trend_smoothing: float = 0.4  # Holt's trend smoothing (beta)
    clear_factor: float = 1.25  # a warning clears once the time to full exceeds its
    # threshold by this factor (hysteresis)
    max_seconds: float = 30 * 86400.0  # a time to full beyond this is "not filling"


@dataclass(frozen=True)
class KubernetesConfig:
    """The `kubernetes:` section: node conditions and events on netagent's own Node."""

    report: bool | None = None  # None: on when in a cluster (a service account) with a node name
    node_name: str = ""  # empty: the NODE_NAME environment variable (the DaemonSet sets it)
    heartbeat_seconds: float = 300.0  # conditions are re-sent at least this often (+ jitter)
    event_namespace: str = "default"  # where the Node's events go, as the kubelet's do
    event_burst: int = 25  # events per reason at once, then
    event_refill_seconds: float = 300.0  # one more per this many seconds (client-go's)


@dataclass(frozen=True)
class ClusterConfig:
    kubeconfig: str | None = None  # else KUBECONFIG, else the pod's service account
    api_timeout_seconds: float = 10.0  # per request to the API server
    poll_seconds: float = 300.0  # at most one node LIST per this many seconds (plus jitter)


if TYPE_CHECKING:
    class AgentIntervals:
        """Seconds between collections of each source by `netagent run` (jitter added)."""

        def __init__(self, **seconds: float) -> None: ...

        def __getattr__(self, source: str) -> float: ...
else:
    # One field per source of the catalog, its default interval the catalog's.
    AgentIntervals = dataclasses.make_dataclass(
        "AgentIntervals",
        [(spec.name, float, field(default=spec.interval)) for spec in catalog.SOURCES],
        frozen=True)
    AgentIntervals.__module__ = __name__
    AgentIntervals.__doc__ = ("Seconds between collections of each source by `netagent run` "
                              "(jitter added).")


@dataclass(frozen=True)
class AgentSettings:
    """The `agent:` section: the daemon `netagent run`."""

    listen: str = "0.0.0.0:9465"
    jitter: float = 0.1  # each interval varies by up to this fraction, either way
    intervals: AgentIntervals = field(default_factory=AgentIntervals)


@dataclass(frozen=True)
class DnsProbeCounts:
    """Probes per resolver and name in each mode (see ``netagent.model.DnsProbe``)."""

    parallel: int = 3
    udp: int = 2
    tcp: int = 2


@dataclass(frozen=True)
class DnsConfig:
    resolvers: tuple[str, ...] = ()  # empty: resolv.conf + kubelet clusterDNS + node-local
    names: tuple[str, ...] = ("kubernetes.default.svc.cluster.local.", "example.com.")
    probes: DnsProbeCounts = field(default_factory=DnsProbeCounts)
    timeout_seconds: float | None = None  # None: resolv.conf "options timeout:" (5)
    attempts: int | None = None  # None: resolv.conf "options attempts:" (2)
    max_seconds: float = 10.0  # the whole DNS round, however many resolvers are dead
    resolv_conf: str = "/etc/resolv.conf"
    kubelet_config: str = "/var/lib/kubelet/config.yaml"
    nodelocal_address: str = "169.254.20.10"  # empty: do not look for a node-local cache
    nodelocal_timeout_seconds: float = 0.3


# The keys remediation may manage: the neighbour thresholds of both families, conntrack's
# limit, and its hash size (a module parameter, named here as nf_conntrack.hashsize).
NEIGHBOUR_KEYS = tuple(f"net.{family}.neigh.default.gc_thresh{level}"
                       for family in ("ipv4", "ipv6") for level in (1, 2, 3))
CONNTRACK_MAX = "net.netfilter.nf_conntrack_max"
HASHSIZE = "nf_conntrack.hashsize"
MANAGED_KEYS = (*NEIGHBOUR_KEYS, CONNTRACK_MAX, HASHSIZE)
REMEDIATION_MODES = ("off", "dry-run", "apply")
PERSIST_FILE = "90-netagent.conf"  # in remediation.persist_dir


@dataclass(frozen=True)
class RemediationConfig:
    """The `remediation:` section: raising limits before a table is full (docs/design.md
    §4.6). Off by default; `netagent run --remediate` is `mode: apply`."""

    mode: str = "off"  # off | dry-run | apply
    trigger_ratio: float = 0.70  # act once a table holds this share of its limit
    horizon_seconds: float = 3600.0  # or once a forecast says it is full within this
    cooldown_seconds: float = 300.0  # at most one change per key per this, unless refusing
    # Default ceilings: a table's worst case at most this share of MemTotal (an IPv4/IPv6
    # neighbour entry is 512 bytes of slab, a conntrack entry 320: measured, see the README).
    memory_share: float = 0.02
    ceilings: tuple[str, ...] = ()  # "KEY=VALUE", overriding the memory-based ceiling
    exclude: tuple[str, ...] = ()  # keys never touched
    take_over: tuple[str, ...] = ()  # keys handed to netagent though set elsewhere
    notrack: bool = True  # restore node-local DNS NOTRACK rules when they are missing
    sysctl_root: str = "/proc/sys"  # the DaemonSet mounts the host's at /host/proc/sys
    module_root: str = "/sys/module"
    persist_dir: str = "/etc/sysctl.d"  # 90-netagent.conf goes here
    sysctl_conf: str = "/etc/sysctl.conf"  # the administrator's file besides persist_dir
    state_dir: str = "/var/lib/netagent"  # journal.json goes here

    def ceiling_overrides(self) -> dict[str, int]:
        return {k: int(v) for k, _, v in (c.partition("=") for c in self.ceilings)}


@dataclass(frozen=True)
class Config:
    interval: float = 2.0  # seconds between the two samples taken by `netagent check`
    nodes: int | None = None  # cluster size, when it cannot be read from the API
    thresholds: Thresholds = field(default_factory=Thresholds)
    agent: AgentSettings = field(default_factory=AgentSettings)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    remediation: RemediationConfig = field(default_factory=RemediationConfig)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)


# The largest cluster netagent sizes for: far above Kubernetes' tested 5,000 nodes, and the
# bound on every node count it reads (--nodes, nodes:, the API's remainingItemCount).
MAX_NODES = 1_000_000
NODES_RANGE = (1, MAX_NODES)

# (minimum, maximum) for numeric keys, by dotted path
_RANGES: dict[str, tuple[float, float]] = {
    "interval": (0, 3600),
    "nodes": NODES_RANGE,
    "thresholds.neighbour.warning_ratio": (0.01, 1.0),
    "thresholds.neighbour.critical_ratio": (0.01, 1.0),
    "thresholds.neighbour.headroom_ratio": (0.05, 0.95),
    "agent.jitter": (0, 0.5),
    "kubernetes.heartbeat_seconds": (10, 86400),
    "kubernetes.event_burst": (1, 1000),
    "kubernetes.event_refill_seconds": (1, 86400),
    "forecast.warning_seconds": (1, 30 * 86400),
    "forecast.critical_seconds": (1, 30 * 86400),
    "forecast.window_seconds": (10, 30 * 86400),
    "forecast.min_samples": (3, 10_000),
    "forecast.min_utilisation": (0.0, 0.95),
    "forecast.smoothing": (0.01, 1.0),
    "forecast.trend_smoothing": (0.01, 1.0),
    "forecast.clear_factor": (1.0, 10.0),
    "forecast.max_seconds": (60, 365 * 86400),
    "remediation.trigger_ratio": (0.05, 0.95),
    "remediation.horizon_seconds": (0, 7 * 86400),
    "remediation.cooldown_seconds": (0, 86400),
    "remediation.memory_share": (0.001, 0.5),
    **{f"agent.intervals.{spec.name}": spec.interval_range for spec in catalog.SOURCES},
    "cluster.api_timeout_seconds": (0.1, 300),
    "cluster.poll_seconds": (10, 86400),
    "thresholds.conntrack.warning_ratio": (0.01, 1.0),
    "thresholds.conntrack.critical_ratio": (0.01, 1.0),
    "thresholds.conntrack.insert_failed_per_second": (0, 1_000_000),
    "thresholds.conntrack.headroom_ratio": (0.05, 0.95),
    "thresholds.dns.p95_warning_seconds": (0.001, 120),
    "thresholds.dns.p95_critical_seconds": (0.001, 120),
    "thresholds.dns.timeout_ratio_warning": (0.0, 1.0),
    "thresholds.dns.timeout_ratio_critical": (0.0, 1.0),
    "thresholds.dns.failure_ratio_warning": (0.0, 1.0),
    "thresholds.dns.failure_ratio_critical": (0.0, 1.0),
    "thresholds.dns.pattern_tolerance": (0.01, 0.5),
    "thresholds.dns.pattern_min_probes": (1, 1000),
    "dns.probes.parallel": (0, 100),
    "dns.probes.udp": (0, 100),
    "dns.probes.tcp": (0, 100),
    "dns.timeout_seconds": (0.05, 30),  # glibc caps timeout at 30 (RES_MAXRETRANS)
    "dns.attempts": (1, 5),  # glibc caps attempts at 5 (RES_MAXRETRY)
    "dns.max_seconds": (0.5, 300),
    "dns.nodelocal_timeout_seconds": (0.01, 5),
}


def parse_listen(listen: str) -> tuple[str, int]:
    """``0.0.0.0:9465``, ``[::]:9465`` or ``:9465`` -> (host, port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()) or not (
            0 < int(port_text) < 65536):
        raise ConfigError(f"listen address '{listen}' must be HOST:PORT with a port 1-65535")
    host = host.strip("[]") or "0.0.0.0"
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError as err:
            raise ConfigError(f"listen address '{listen}': '{host}' is not an IP address"
                              ) from err
    return host, int(port_text)


# A DNS name as a resolver takes it (RFC 1035 2.3.4): labels of 1-63 octets, 255 in all on
# the wire (253 characters written out, plus the root's dot).
_LABEL = re.compile(r"^[A-Za-z0-9_*](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def dns_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be put in a query, or None."""
    if not name or name == ".":
        return "an empty name"
    if len(name.rstrip(".")) > 253:
        return "longer than 253 characters"
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    for label in labels:
        if not label:
            return "an empty label (two dots in a row, or a leading dot)"
        if len(label) > 63:
            return f"a label longer than 63 characters ({shorten(label, 20)})"
        if not _LABEL.match(label):
            return f"a label with characters DNS names do not hold ({shorten(label, 20)})"
    return None


def load(path: str | Path | None) -> Config:
    """Read a YAML file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = load_yaml(read_text(path, what="configuration"), where=str(path))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    except LoadError as err:
        raise ConfigError(str(err)) from err
    if data is None:
        data = {}
    config: Config = build(Config, data, where=str(path))
    _cross_checks(config, where=str(path))
    return config


def build(cls: type[Any], data: Any, *, where: str, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        what = f"'{prefix.rstrip('.')}'" if prefix else "the file"
        raise ConfigError(f"{where}: {what} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            dotted = prefix + shorten(key, 40).strip("'")
            known = ", ".join(sorted(names))
            raise ConfigError(f"{where}: unknown key '{dotted}' (known: {known})")
    values = {}
    for name in names:
        if name in data:
            dotted = prefix + name
            values[name] = _convert(hints[name], data[name], where=where, key=dotted)
    return cls(**values)


def _convert(hint: Any, value: Any, *, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        hint = options[0]
        origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, value, where=where, prefix=key + ".")
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: '{key}' must be a list of strings")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{key}' must be true or false, not {shorten(value)}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or (
            hint is int and not isinstance(value, int)
        ):
            kind = "an integer" if hint is int else "a number"
            raise ConfigError(f"{where}: '{key}' must be {kind}, not {shorten(value)}")
        low, high = _RANGES.get(key, (float("-inf"), float("inf")))
        if not low <= value <= high:
            raise ConfigError(f"{where}: '{key}' must be between {low:g} and {high:g}, "
                              f"not {shorten(value)}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' must be a string, not {shorten(value)}")
        return value
    raise ConfigError(f"{where}: '{key}': unsupported setting type {hint!r}")


def _cross_checks(config: Config, *, where: str) -> None:
    d = config.thresholds.dns
    for low, high in (("p95_warning_seconds", "p95_critical_seconds"),
                      ("timeout_ratio_warning", "timeout_ratio_critical"),
                      ("failure_ratio_warning", "failure_ratio_critical")):
        if getattr(d, low) > getattr(d, high):
            raise ConfigError(f"{where}: 'thresholds.dns.{low}' must not exceed "
                              f"'thresholds.dns.{high}'")
    for key in ("resolvers", "nodelocal_address"):
        values = getattr(config.dns, key)
        for value in (values,) if isinstance(values, str) else values:
            try:
                if value:
                    ipaddress.ip_address(value)
            except ValueError as err:
                raise ConfigError(f"{where}: 'dns.{key}': {shorten(value)} is not an IP "
                                  "address") from err
    for name in config.dns.names:
        problem = dns_name_problem(name)
        if problem:
            raise ConfigError(f"{where}: 'dns.names': {shorten(name)} is not a DNS name: "
                              f"{problem}")
    try:
        parse_listen(config.agent.listen)
    except ConfigError as err:
        raise ConfigError(f"{where}: 'agent.listen': {err}") from err
    r = config.remediation
    if r.mode not in REMEDIATION_MODES:
        raise ConfigError(f"{where}: 'remediation.mode' must be one of "
                          f"{', '.join(REMEDIATION_MODES)}, not {shorten(r.mode)}")
    for key in (*r.exclude, *r.take_over):
        if key not in MANAGED_KEYS:
            raise ConfigError(f"{where}: 'remediation' names {shorten(key)}, which netagent "
                              f"does not manage (it manages {', '.join(MANAGED_KEYS)})")
    for item in r.ceilings:
        key, eq, value = item.partition("=")
        if key not in MANAGED_KEYS or not eq or not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{where}: 'remediation.ceilings': {shorten(item)} is not "
                              "KEY=VALUE with a managed key and a positive integer")
    f = config.forecast
    if f.critical_seconds > f.warning_seconds:
        raise ConfigError(f"{where}: 'forecast.critical_seconds' ({f.critical_seconds:g}) must "
                          f"not exceed 'forecast.warning_seconds' ({f.warning_seconds:g})")
    n = config.thresholds.neighbour
    if n.warning_ratio >= n.critical_ratio:
        raise ConfigError(f"{where}: 'thresholds.neighbour.warning_ratio' ({n.warning_ratio}) "
                          f"must be below 'thresholds.neighbour.critical_ratio' "
                          f"({n.critical_ratio})")
    c = config.thresholds.conntrack
    if c.warning_ratio >= c.critical_ratio:
        raise ConfigError(f"{where}: 'thresholds.conntrack.warning_ratio' ({c.warning_ratio}) "
                          f"must be below 'thresholds.conntrack.critical_ratio' "
                          f"({c.critical_ratio})")
