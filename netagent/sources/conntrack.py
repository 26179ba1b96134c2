"""This network namespace's connection tracking table: size, limit, hash buckets, events.

What a person would type: ``conntrack -C`` (entries in this namespace), ``conntrack -S``
(per-CPU events), ``sysctl net.netfilter`` (``nf_conntrack_count``, ``nf_conntrack_max``,
``nf_conntrack_buckets``) and ``cat /proc/net/stat/nf_conntrack``.

``nf_conntrack_count`` and the statistics belong to the namespace the agent runs in (the
host's, for a DaemonSet with ``hostNetwork``), while ``nf_conntrack_max`` and
``nf_conntrack_buckets`` are global. Many distribution kernels are built without
``CONFIG_NF_CONNTRACK_PROCFS``: then the statistics come over netlink (pyroute2
``Conntrack().stat()``, which needs CAP_NET_ADMIN), and the record says which was used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from netagent.config import Config
from netagent.errors import NetagentError, SourceError
from netagent.model import ConntrackObservation, ConntrackStats, KernelVersion
from netagent.parse.conntrack import PROC_FILE, parse_netlink_stats, parse_proc_stats
from netagent.sources.procfs import ProcFS

NetlinkStats = Callable[[], Sequence[Mapping[str, Any]]]

STATS_FROM = ("auto", "procfs", "netlink")


def pyroute2_stats() -> list[dict[str, Any]]:
    """``conntrack -S`` through pyroute2: one dict of counters per CPU."""
    from pyroute2 import Conntrack
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ct = Conntrack()
    except OSError as err:
        raise SourceError(f"cannot open a netfilter netlink socket: {err.strerror or err}"
                          ) from err
    try:
        return list(ct.stat())
    except NetlinkError as err:
        if err.code == 1:  # EPERM
            raise SourceError("conntrack statistics over netlink need CAP_NET_ADMIN") from err
        raise SourceError(f"conntrack statistics over netlink: {err}") from err
    except OSError as err:
        raise SourceError(f"conntrack statistics over netlink: {err.strerror or err}") from err
    finally:
        ct.close()


class ConntrackSource:
    """Reads nf_conntrack's count, limits and statistics for the current namespace."""

    name = "conntrack"

    def __init__(
        self,
        *,
        proc_root: str = "/proc",
        netlink: NetlinkStats = pyroute2_stats,
        stats_from: str = "auto",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if stats_from not in STATS_FROM:
            raise ValueError(f"stats_from must be one of {STATS_FROM}, not {stats_from!r}")
        self.proc = ProcFS(proc_root)
        self.netlink = netlink
        self.stats_from = stats_from
        self.clock = clock

    def kernel(self) -> KernelVersion:
        return self.proc.kernel()

    def namespace(self) -> str:
        try:
            return os.readlink(self.proc.path("self/ns/net"))
        except OSError:
            return ""

    def read_count(self) -> int:
        """``nf_conntrack_count``; a missing file means nf_conntrack is not loaded at all."""
        if not self.proc.path("sys/net/netfilter").is_dir():
            raise SourceError(
                f"{self.proc.path('sys/net/netfilter')} does not exist: the nf_conntrack "
                f"module is not loaded, so nothing is tracked (nothing to guard)")
        try:
            return self.proc.sysctl("net.netfilter.nf_conntrack_count")
        except SourceError as err:
            raise SourceError(f"{err} (is the nf_conntrack module loaded?)") from err

    def read_stats(self) -> ConntrackStats:
        """From procfs when the kernel has the file, else over netlink."""
        proc_error: str | None = None
        if self.stats_from in ("auto", "procfs"):
            try:
                return parse_proc_stats(self.proc.read_text(PROC_FILE),
                                        source=str(self.proc.path(PROC_FILE)))
            except SourceError as err:
                proc_error = str(err)
                if self.stats_from == "procfs":
                    raise
            except NetagentError as err:
                raise SourceError(str(err)) from err
        try:
            return parse_netlink_stats(self.netlink())
        except SourceError as err:
            if proc_error:
                raise SourceError(f"{proc_error} (kernel built without "
                                  f"CONFIG_NF_CONNTRACK_PROCFS?) and {err}") from err
            raise
        except NetagentError as err:
            raise SourceError(str(err)) from err

    def _optional(self, name: str, problems: dict[str, str]) -> int | None:
        try:
            return self.proc.sysctl(name)
        except SourceError as err:
            problems[name.rsplit(".", 1)[-1]] = str(err)
            return None

    def sample(self) -> ConntrackObservation:
        """Count and statistics only: what rates are computed from."""
        return self._observe(limits=False)

    def collect(self) -> ConntrackObservation:
        return self._observe(limits=True)

    def _observe(self, *, limits: bool) -> ConntrackObservation:
        count = self.read_count()
        problems: dict[str, str] = {}
        stats: ConntrackStats | None = None
        try:
            stats = self.read_stats()
        except SourceError as err:
            problems["stats"] = str(err)
        max_ = buckets = None
        if limits:
            max_ = self._optional("net.netfilter.nf_conntrack_max", problems)
            buckets = self._optional("net.netfilter.nf_conntrack_buckets", problems)
        return ConntrackObservation(
            kernel=self.kernel(), count=count, max=max_, buckets=buckets, stats=stats,
            namespace=self.namespace(), problems=problems, monotonic=self.clock())


def from_config(config: Config, wanted: Sequence[str]) -> ConntrackSource:
    return ConntrackSource()
