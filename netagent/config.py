"""Configuration: YAML -> frozen dataclasses.

Every key has a default, so an empty file (or none) is a valid configuration. An unknown key,
a value of the wrong type or out of range is a ``ConfigError`` that names the key and the
file. Sections are plain dataclasses; the loader walks their fields, so a new setting is one
field with a default and, where it needs one, a range in ``_RANGES``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from netagent.errors import ConfigError


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
    # the 5-second pattern: answers arriving within this share of k x resolver timeout
    pattern_tolerance: float = 0.10
    pattern_min_probes: int = 2


@dataclass(frozen=True)
class Thresholds:
    neighbour: NeighbourThresholds = field(default_factory=NeighbourThresholds)
    conntrack: ConntrackThresholds = field(default_factory=ConntrackThresholds)
    dns: DnsThresholds = field(default_factory=DnsThresholds)


@dataclass(frozen=True)
class ClusterConfig:
    kubeconfig: str | None = None  # else KUBECONFIG, else the pod's service account
    api_timeout_seconds: float = 10.0  # per request to the API server
    poll_seconds: float = 300.0  # at most one node LIST per this many seconds (plus jitter)


@dataclass(frozen=True)
class AgentIntervals:
    """Seconds between collections of each source by `netagent run` (jitter added)."""

    neighbours: float = 15.0
    conntrack: float = 15.0
    overlay: float = 15.0
    dns: float = 30.0
    # The cluster source asks the API at most once per cluster.poll_seconds (300 s, with
    # jitter) and answers from its cache in between, so this only bounds how stale that
    # answer can be; a second long interval here would compound with the source's own.
    cluster: float = 30.0


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


@dataclass(frozen=True)
class Config:
    interval: float = 2.0  # seconds between the two samples taken by `netagent check`
    nodes: int | None = None  # cluster size, when it cannot be read from the API
    thresholds: Thresholds = field(default_factory=Thresholds)
    agent: AgentSettings = field(default_factory=AgentSettings)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)


# (minimum, maximum) for numeric keys, by dotted path
_RANGES: dict[str, tuple[float, float]] = {
    "interval": (0, 3600),
    "nodes": (1, 1_000_000),
    "thresholds.neighbour.warning_ratio": (0.01, 1.0),
    "thresholds.neighbour.critical_ratio": (0.01, 1.0),
    "thresholds.neighbour.headroom_ratio": (0.05, 0.95),
    "agent.jitter": (0, 0.5),
    "agent.intervals.neighbours": (0.1, 86400),
    "agent.intervals.conntrack": (0.1, 86400),
    "agent.intervals.overlay": (0.1, 86400),
    "agent.intervals.dns": (0.1, 86400),
    "agent.intervals.cluster": (0.1, 86400),
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


def load(path: str | Path | None) -> Config:
    """Read a YAML file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
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
            dotted = prefix + str(key)
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
            raise ConfigError(f"{where}: '{key}' must be true or false, not {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or (
            hint is int and not isinstance(value, int)
        ):
            kind = "an integer" if hint is int else "a number"
            raise ConfigError(f"{where}: '{key}' must be {kind}, not {value!r}")
        low, high = _RANGES.get(key, (float("-inf"), float("inf")))
        if not low <= value <= high:
            raise ConfigError(f"{where}: '{key}' must be between {low:g} and {high:g}, "
                              f"not {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' must be a string, not {value!r}")
        return value
    raise ConfigError(f"{where}: '{key}': unsupported setting type {hint!r}")


def _cross_checks(config: Config, *, where: str) -> None:
    d = config.thresholds.dns
    for low, high in (("p95_warning_seconds", "p95_critical_seconds"),
                      ("timeout_ratio_warning", "timeout_ratio_critical")):
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
                raise ConfigError(f"{where}: 'dns.{key}': {value!r} is not an IP address"
                                  ) from err
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
