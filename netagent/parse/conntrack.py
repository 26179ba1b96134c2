"""Conntrack statistics: ``/proc/net/stat/nf_conntrack`` and ``conntrack -S`` over netlink.

Both say the same thing under different names; this module turns either into one
``ConntrackStats`` whose counter names are those of the netlink attributes
(``CTA_STATS_FOUND`` -> ``found``), so checks and metrics never care where numbers came from.

The procfs header changed twice (``ct_cpu_seq_show`` in net/netfilter/nf_conntrack_standalone.c):

- legacy:   ``entries searched found new invalid ignore delete delete_list insert ...``
- clashres: the second column became ``clashres`` = ``st->clash_resolve`` (bc92470413f3
  "netfilter: conntrack: add clash resolution stat counter"); ``searched`` had long been 0;
- current:  ``delete_list`` became ``chainlength`` = ``st->chaintoolong`` (inserts refused
  because a hash chain grew too long), the netlink ``CTA_STATS_CHAIN_TOOLONG``.

``searched`` and ``delete_list`` are different counters from the columns that replaced
them, so they keep their own (legacy) names: a legacy kernel simply has no
``clash_resolve``. ``icmp_error`` is the netlink ``error``. Also here: which of the kernel
fixes for the conntrack NAT insertion race (the DNS 5-second timeouts) a kernel has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netagent.errors import ParseError
from netagent.model import ConntrackStats, KernelVersion
from netagent.parse.procstat import parse_percpu_table

PROC_FILE = "net/stat/nf_conntrack"

# procfs column -> canonical (netlink attribute) name, where they differ
_PROC_NAMES = {
    "clashres": "clash_resolve",
    "chainlength": "chaintoolong",
    "icmp_error": "error",
}
# pyroute2 ``Conntrack().stat()`` key (CTA_STATS_ minus the prefix) -> canonical name
_NETLINK_NAMES = {
    "chain_toolong": "chaintoolong",
}


def _layout(header: Iterable[str]) -> str:
    names = set(header)
    if "searched" in names:
        return "legacy"
    if "chainlength" in names:
        return "current"
    if "clashres" in names:
        return "clashres"
    return "unknown"


def parse_proc_stats(text: str, *, source: str = "/proc/" + PROC_FILE) -> ConntrackStats:
    """``/proc/net/stat/nf_conntrack`` -> ``ConntrackStats`` (``cat`` it to see the same)."""
    table = parse_percpu_table(text, source=source)
    if table.entries is None:
        raise ParseError(f"{source}: no 'entries' column")
    counters = {_PROC_NAMES.get(name, name): value for name, value in table.counters.items()}
    header = text.split("\n", 1)[0].split()
    return ConntrackStats(source="procfs", entries=table.entries, counters=counters,
                          cpus=table.cpus, layout=_layout(header))


def parse_netlink_stats(messages: Iterable[Mapping[str, Any]]) -> ConntrackStats:
    """pyroute2 per-CPU stat messages -> ``ConntrackStats`` summed over CPUs.

    Takes either form pyroute2 0.9 produces: ``Conntrack().stat()`` (one flat dict per CPU,
    ``{"cpu": 0, "found": 0, "insert_failed": 3, ...}``) or the raw ``NFCTSocket().stat()``
    messages (``{"res_id": cpu, "attrs": [["CTA_STATS_FOUND", 0], ...]}``). The same
    numbers as ``conntrack -S``, which prints one line per CPU.
    """
    sums: dict[str, int] = {}
    cpus = 0
    for number, message in enumerate(messages):
        cpus += 1
        for name, value in _stat_pairs(message):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ParseError(f"conntrack stats message {number}: {name} is {value!r}, "
                                    f"not a counter")
            sums[name] = sums.get(name, 0) + value
    if not cpus:
        raise ParseError("conntrack stats over netlink: the kernel sent no per-CPU message")
    return ConntrackStats(source="netlink", entries=None, counters=sums, cpus=cpus,
                          layout="netlink")


def _stat_pairs(message: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    if "attrs" in message:
        for pair in message["attrs"]:
            name, value = pair[0], pair[1]
            if isinstance(name, str) and name.startswith("CTA_STATS_"):
                key = name[len("CTA_STATS_"):].lower()
                yield _NETLINK_NAMES.get(key, key), value
        return
    for key, value in message.items():
        if key != "cpu":
            yield _NETLINK_NAMES.get(key, key), value


# --- the kernel fixes for the NAT insertion race ----------------------------------------


@dataclass(frozen=True)
class KernelFix:
    commit: str
    subject: str
    mainline: tuple[int, int]  # first release that has it
    stable: tuple[tuple[int, int, int], ...]  # stable releases that got it as a backport
    effect: str

    @property
    def release(self) -> str:
        return f"{self.mainline[0]}.{self.mainline[1]}"

    def in_kernel(self, kernel: KernelVersion) -> bool:
        if kernel.at_least(*self.mainline):
            return True
        return any(kernel.major == major and kernel.minor == minor
                   and kernel.patch >= patch for major, minor, patch in self.stable)


# Commits and subjects as in the mainline tree; the stable backports are those listed for
# the two 2019 fixes in the Ubuntu SRU thread for LP#1836816 and the weave.works write-up
# ("Racy conntrack and DNS lookup timeouts") that led to them.
RACE_FIXES = (
    KernelFix(
        commit="ed07d9a021df",
        subject="netfilter: nf_conntrack: resolve clash for matching conntracks",
        mainline=(4, 19),
        stable=((4, 9, 163), (4, 14, 106)),
        effect=("when two packets of one flow race to insert identical entries, the loser "
                "adopts the winner's entry instead of being dropped (race 1: neither packet "
                "found a confirmed entry)"),
    ),
    KernelFix(
        commit="4e35c1cb9460",
        subject="netfilter: nf_nat: skip nat clash resolution for same-origin entries",
        mainline=(5, 0),
        stable=((4, 9, 163), (4, 14, 106), (4, 19, 29)),
        effect=("NAT no longer gives the second packet of a same-origin flow a different "
                "source port, which made its entry clash and be dropped (race 2)"),
    ),
    KernelFix(
        commit="6a757c07e51f",
        subject="netfilter: conntrack: allow insertion of clashing entries",
        mainline=(5, 6),
        stable=(),
        effect=("a UDP packet whose entry still clashes after NAT (DNAT picked a different "
                "backend, as kube-proxy's random DNS endpoints do) is let through with a "
                "short-lived extra entry instead of being dropped (race 3)"),
    ),
)


@dataclass(frozen=True)
class FixPresence:
    fix: KernelFix
    present: bool

    def describe(self) -> str:
        if self.present:
            return f"yes ({self.fix.release}+)"
        return (f"no upstream (needs {self.fix.release}; a distribution kernel may carry a "
                f"backport: check its changelog for {self.fix.commit})")


def dns_race_fixes(kernel: KernelVersion) -> tuple[FixPresence, ...]:
    """Which fixes for the conntrack NAT insertion race the running kernel has, by version."""
    return tuple(FixPresence(fix, fix.in_kernel(kernel)) for fix in RACE_FIXES)
