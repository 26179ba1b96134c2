"""Conntrack traffic inside a lab namespace, all of it on the namespace's own loopback.

A new network namespace tracks nothing until a rule needs conntrack (the hooks are
registered per namespace on demand), so ``track()`` adds an nftables ``ct state`` rule.
``udp_flows()`` then creates one entry per datagram (each from its own source port to a
listener in the namespace); ``TcpHolder`` keeps established, hence *assured*, TCP
connections open: the kernel cannot evict those with early_drop, so once they fill the
table (``nf_conntrack_max`` lowered for a moment) every new flow is dropped and ``drop``
rises. ``insertion_races()`` makes two threads send the first packet of the same new flow
at once, over and over: for UDP the kernel merges the two entries (``clash_resolve``), for
TCP it cannot (no clash resolution for TCP), so one packet is dropped and ``insert_failed``
and ``drop`` rise, the race behind the DNS 5-second timeouts. Every loop is bounded in count
and time; see ``conntrack -L`` / ``-S`` in the namespace to watch.
"""

from __future__ import annotations

import subprocess
import time
from types import TracebackType

from labkit import workers
from labkit.netlab import sh

NFT_TABLE = "nalab_conntrack"
MAX_FLOWS = 60_000  # source ports 1024..61023 on one address; far above any test






def insertion_races(ns: str, proto: str, rounds: int, *, within: float = 20.0) -> int:
    """Race two packets of one new flow ``rounds`` times in ``ns``; returns rounds run."""
    if proto not in ("udp", "tcp"):
        raise ValueError("proto must be udp or tcp")
    if not 0 < rounds <= MAX_FLOWS:
        raise ValueError(f"rounds must be 1..{MAX_FLOWS}")
    worker = workers.command("race", proto, str(rounds), str(within))
    proc = sh(["ip", "netns", "exec", ns, *worker], timeout=within + 30)
    return int(proc.stdout.split()[0])


def track(ns: str) -> None:
    """Make the kernel track connections in ``ns`` (an nftables rule that uses ``ct``)."""
    sh(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=(
        f"table inet {NFT_TABLE} {{\n"
        f"  chain input {{ type filter hook input priority 0; ct state established accept; }}\n"
        f"}}\n"))


def udp_flows(ns: str, count: int, *, within: float = 30.0) -> tuple[int, int]:
    """Send ``count`` datagrams from distinct source ports inside ``ns``: (sent, refused)."""
    if not 0 < count <= MAX_FLOWS:
        raise ValueError(f"count must be 1..{MAX_FLOWS}")
    proc = sh(["ip", "netns", "exec", ns, *workers.command("udp-flood", str(count),
                                                            str(within))], timeout=within + 30)
    sent, refused = proc.stdout.split()
    return int(sent), int(refused)


def count(ns: str) -> int:
    """``conntrack -C`` inside ``ns``."""
    return int(sh(["ip", "netns", "exec", ns, "conntrack", "-C"]).stdout.split()[0])


def stats(ns: str) -> dict[str, int]:
    """``conntrack -S`` inside ``ns``, summed over CPUs (keys as conntrack prints them)."""
    out = sh(["ip", "netns", "exec", ns, "conntrack", "-S"]).stdout
    return sum_stats_lines(out)


def sum_stats_lines(text: str) -> dict[str, int]:
    sums: dict[str, int] = {}
    for line in text.splitlines():
        for field in line.split():
            key, _, value = field.partition("=")
            if key != "cpu" and value.isdigit():
                sums[key] = sums.get(key, 0) + int(value)
    return sums


class TcpHolder:
    """Hold ``connections`` established TCP connections open in ``ns`` (context manager)."""

    def __init__(self, ns: str, connections: int, *, hold: float = 60.0) -> None:
        if not 0 < connections <= 20_000:
            raise ValueError("connections must be 1..20000")
        self.ns, self.connections, self.hold = ns, connections, hold
        self.proc: subprocess.Popen[str] | None = None
        self.ready = 0

    def __enter__(self) -> TcpHolder:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns,
             *workers.command("tcp-hold", str(self.connections), str(self.hold))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.hold
        line = ""
        while time.monotonic() < deadline and not line:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
        if not line.startswith("ready"):
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self._stop()
            raise RuntimeError(f"TCP holder in {self.ns} did not start: {line!r} {err[-500:]}")
        self.ready = int(line.split()[1])
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None




def capture(ns: str, dest: str) -> None:
    """Record ``ns``'s conntrack files and ``conntrack -S``/``-C``/pyroute2 answers."""
    sh(["ip", "netns", "exec", ns, *workers.command("capture", dest)])
