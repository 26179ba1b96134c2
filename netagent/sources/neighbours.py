"""The kernel's neighbour tables (ARP and IPv6 ND) across every network namespace.

What a person would type: ``ip -s neigh show`` in each namespace (``ip -all netns exec``),
``cat /proc/net/stat/arp_cache`` and ``sysctl net.ipv4.neigh.default``.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial

from netagent.config import Config
from netagent.errors import ParseError, SourceError
from netagent.model import (
    FAMILIES,
    STAT_FILE,
    KernelVersion,
    NamespaceNeighbours,
    NeighbourLimits,
    NeighbourObservation,
    NeighbourSnapshot,
    NeighbourStats,
    NeighbourTable,
)
from netagent.parse.neighbours import RECENT_TICKS, GcRule, count_namespace
from netagent.parse.netlink import (
    NeighbourTally,
    decode_links,
    link_dump_request,
    neighbour_dump_request,
    tally_neighbours,
)
from netagent.parse.procstat import parse_percpu_table
from netagent.sources import netns
from netagent.sources.procfs import ProcFS
from netagent.sources.rtnl import Dump, next_seq

SYSCTL_FAMILY = {"ipv4": "ipv4", "ipv6": "ipv6"}


class NeighbourSource:
    """Reads both families' tables, stats and limits."""

    name = "neighbours"

    def __init__(
        self,
        *,
        proc_root: str = "/proc",
        run_netns: str = "/run/netns",
        families: tuple[str, ...] = FAMILIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.proc = ProcFS(proc_root)
        self.proc_root = proc_root
        self.run_netns = run_netns
        self.families = families
        self.clock = clock

    # -- the cheap part: global counters and limits ------------------------------------
    def kernel(self) -> KernelVersion:
        return self.proc.kernel()

    def read_stats(self, family: str) -> NeighbourStats:
        name = f"net/stat/{STAT_FILE[family]}"
        try:
            table = parse_percpu_table(self.proc.read_text(name), source=name)
        except SourceError as err:
            raise SourceError(f"{err} (it exists only in the initial network namespace)") from err
        except ParseError as err:  # the message names the file
            raise SourceError(str(err)) from err
        if table.entries is None:
            raise SourceError(f"{name}: no 'entries' column")
        return NeighbourStats(entries=table.entries, counters=table.counters)

    def read_limits(self, family: str) -> NeighbourLimits:
        base = f"net.{SYSCTL_FAMILY[family]}.neigh.default."
        try:
            thresholds = [self.proc.sysctl(base + f"gc_thresh{i}") for i in (1, 2, 3)]
        except SourceError as err:
            raise SourceError(f"{err} (gc_thresh exists only in the initial network namespace)"
                              ) from err
        return NeighbourLimits(
            gc_thresh1=thresholds[0],
            gc_thresh2=thresholds[1],
            gc_thresh3=thresholds[2],
            gc_interval=self._optional_sysctl(base + "gc_interval"),
            gc_stale_time=self._optional_sysctl(base + "gc_stale_time"),
        )

    def _optional_sysctl(self, name: str) -> int | None:
        try:
            return self.proc.sysctl(name)
        except SourceError:
            return None

    def sample(self) -> NeighbourSnapshot:
        """Counters and limits only: no table dump."""
        kernel = self.kernel()
        return NeighbourSnapshot({
            family: self._observe(family, kernel, table=None, problems={})
            for family in self.families
        })

    def _observe(self, family: str, kernel: KernelVersion, *, table: NeighbourTable | None,
                 problems: dict[str, str]) -> NeighbourObservation:
        stats = limits = None
        if family == "ipv6" and not self.proc.path("sys/net/ipv6").exists():
            # ipv6.disable=1 (or no IPv6 in the kernel): there is no ND table to overflow.
            return NeighbourObservation(
                family=family, kernel=kernel, stats=None, limits=None, table=None,
                problems={"disabled": "IPv6 is disabled on this kernel "
                                      f"({self.proc.path('sys/net/ipv6')} does not exist)"},
                monotonic=self.clock())
        try:
            stats = self.read_stats(family)
        except SourceError as err:
            problems["stats"] = str(err)
        try:
            limits = self.read_limits(family)
        except SourceError as err:
            problems["limits"] = str(err)
        return NeighbourObservation(family=family, kernel=kernel, stats=stats, limits=limits,
                                    table=table, problems=problems, monotonic=self.clock())

    # -- the full observation ------------------------------------------------------------
    def collect(self) -> NeighbourSnapshot:
        kernel = self.kernel()
        rule = GcRule.for_kernel(kernel)
        discovery = netns.discover(proc_root=self.proc_root, run_netns=self.run_netns)
        per_family: dict[str, list[NamespaceNeighbours]] = {f: [] for f in self.families}
        unreadable: dict[str, str] = dict(discovery.uninspectable)
        read = 0
        for ns in discovery.namespaces:
            try:
                counts = self._count_in(ns, rule)
            except SourceError as err:
                unreadable[ns.name] = str(err)
                continue
            except ParseError as err:  # a dump the decoder refused: this namespace only
                unreadable[ns.name] = f"netlink dump of {ns.name}: {err}"
                continue
            read += 1
            for family, count in counts.items():
                if count.total:
                    per_family[family].append(count)
        result = {}
        for family in self.families:
            table = NeighbourTable(
                family=family,
                namespaces=tuple(per_family[family]),
                namespaces_read=read,
                unreadable=unreadable,
            )
            result[family] = self._observe(family, kernel, table=table, problems={})
        return NeighbourSnapshot(result)

    def _count_in(self, ns: netns.Namespace, rule: GcRule) -> dict[str, NamespaceNeighbours]:
        sock = netns.netlink_socket(ns)
        try:
            links = Dump(sock, link_dump_request(seq=next_seq()), what=f"links in {ns.name}")
            names = {link.ifindex: link.name
                     for chunk in links.chunks() for link in decode_links(chunk)}
            out = {}
            for family in self.families:
                out[family] = self._count_family(sock, ns, family, rule, names)
            return out
        finally:
            sock.close()

    def _count_family(self, sock: socket.socket, ns: netns.Namespace, family: str,
                      rule: GcRule, names: dict[int, str]) -> NamespaceNeighbours:
        # A dump the kernel flags as interrupted (the table changed under it) is retried
        # once; a second interrupted dump is still counted, it is off by a few entries.
        for attempt in (1, 2):
            dump = Dump(sock, neighbour_dump_request(family, seq=next_seq()),
                        what=f"{family} neighbours in {ns.name}")
            tally: NeighbourTally = Counter()
            dump.consume(partial(tally_neighbours, tally=tally, recent_ticks=RECENT_TICKS))
            if not dump.interrupted or attempt == 2:
                return count_namespace(tally, namespace=ns.name, rule=rule, link_names=names)
        raise AssertionError("unreachable")


def from_config(config: Config, wanted: Sequence[str]) -> NeighbourSource:
    return NeighbourSource()
