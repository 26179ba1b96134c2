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
import sys
import time
from types import TracebackType

from labkit.netlab import sh

NFT_TABLE = "nalab_conntrack"
MAX_FLOWS = 60_000  # source ports 1024..61023 on one address; far above any test

# Runs inside the namespace: send argv[1] datagrams, each from its own source port (1024 +
# i: an ephemeral port could come back after close and reuse a flow), to a listener on
# 127.0.0.1:65535, for at most argv[2] seconds; prints "<sent> <refused>". A datagram the
# kernel drops in conntrack (table full) fails with EPERM at sendto().
_UDP_WORKER = r"""
import socket, sys, time
count, limit = int(sys.argv[1]), float(sys.argv[2])
deadline = time.monotonic() + limit
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("127.0.0.1", 65535))
sent = refused = 0
for i in range(count):
    if time.monotonic() > deadline:
        break
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 1024 + i))
        s.sendto(b"netagent-lab", srv.getsockname())
        sent += 1
    except PermissionError:
        refused += 1
    finally:
        s.close()
print(sent, refused, flush=True)
"""

# Runs inside the namespace: open argv[1] TCP connections to a listener on 127.0.0.1 with
# data both ways (so each entry is ESTABLISHED and assured), print "ready <n>", then hold
# them until stdin closes or argv[2] seconds pass.
_TCP_WORKER = r"""
import select, socket, sys, time
count, hold = int(sys.argv[1]), float(sys.argv[2])
deadline = time.monotonic() + hold
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(4096)
keep = []
for _ in range(count):
    if time.monotonic() > deadline:
        break
    c = socket.create_connection(srv.getsockname(), timeout=2)
    a, _ = srv.accept()
    c.sendall(b"x"); a.recv(1); a.sendall(b"y"); c.recv(1)
    keep += [c, a]
print("ready", len(keep) // 2, flush=True)
select.select([sys.stdin], [], [], max(0.0, deadline - time.monotonic()))
"""


# Runs inside the namespace: argv[2] rounds (at most argv[3] seconds) in which two threads,
# released together by a barrier, send the first packet of one new flow to 127.0.0.1.
# argv[1] "udp": one UDP socket shared by both threads (glibc's A/AAAA pattern), a new
# socket each round. "tcp": the same hand-made SYN from two raw sockets (TCP port 9, where
# nothing listens), a new source port each round. Prints the rounds run.
_RACE_WORKER = r"""
import os, socket, struct, sys, threading, time
proto, rounds, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + limit
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("127.0.0.1", 0))
barrier = threading.Barrier(3, timeout=10)
shared = {}

def syn(sport):
    lo = socket.inet_aton("127.0.0.1")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, socket.IPPROTO_TCP, 0, lo, lo)
    return ip + struct.pack("!HHIIBBHHH", sport, 9, 1, 0, 5 << 4, 0x02, 65535, 0, 0)

def racer(cpu):
    # one racer per CPU where there are two: the race needs them to run at the same time
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        while True:
            barrier.wait()
            if shared.get("stop"):
                return
            try:
                if proto == "udp":
                    shared["sock"].sendto(b"q", srv.getsockname())
                else:
                    raw.sendto(shared["packet"], ("127.0.0.1", 0))
            except OSError:
                pass  # the loser of an unresolved clash is dropped: EPERM
            barrier.wait()
    except threading.BrokenBarrierError:
        return

threads = [threading.Thread(target=racer, args=(n,)) for n in range(2)]
for t in threads:
    t.start()
done = 0
for i in range(rounds):
    if time.monotonic() > deadline:
        break
    if proto == "udp":
        shared["sock"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    else:
        shared["packet"] = syn(10000 + i % 50000)
    barrier.wait()
    barrier.wait()
    if proto == "udp":
        shared["sock"].close()
    done += 1
shared["stop"] = True
barrier.wait()
for t in threads:
    t.join(timeout=10)
print(done, flush=True)
"""


def insertion_races(ns: str, proto: str, rounds: int, *, within: float = 20.0) -> int:
    """Race two packets of one new flow ``rounds`` times in ``ns``; returns rounds run."""
    if proto not in ("udp", "tcp"):
        raise ValueError("proto must be udp or tcp")
    if not 0 < rounds <= MAX_FLOWS:
        raise ValueError(f"rounds must be 1..{MAX_FLOWS}")
    proc = sh(["ip", "netns", "exec", ns, sys.executable, "-c", _RACE_WORKER, proto,
               str(rounds), str(within)], timeout=within + 30)
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
    proc = sh(["ip", "netns", "exec", ns, sys.executable, "-c", _UDP_WORKER, str(count),
               str(within)], timeout=within + 30)
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
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", _TCP_WORKER,
             str(self.connections), str(self.hold)],
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


# Runs inside the namespace: write the files and tool outputs a conntrack fixture needs
# under argv[1]. pyroute2's answers are stored as JSON (the decoded message dicts).
_CAPTURE_WORKER = r"""
import json, pathlib, shutil, subprocess, sys
dest = pathlib.Path(sys.argv[1])
for rel in ("net/stat/nf_conntrack", "sys/net/netfilter/nf_conntrack_count",
            "sys/net/netfilter/nf_conntrack_max", "sys/net/netfilter/nf_conntrack_buckets",
            "sys/kernel/osrelease"):
    target = dest / "proc" / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(pathlib.Path("/proc", rel).read_text())
for name, args in (("conntrack-S.txt", ["conntrack", "-S"]),
                   ("conntrack-C.txt", ["conntrack", "-C"])):
    (dest / name).write_text(subprocess.run(args, capture_output=True, text=True,
                                            check=True, timeout=30).stdout)
from pyroute2 import Conntrack, NFCTSocket
ct = Conntrack()
try:
    flat = ct.stat()
finally:
    ct.close()
sock = NFCTSocket()
try:
    raw = [{"res_id": m["res_id"], "attrs": [[k, v] for k, v in m["attrs"]]}
           for m in sock.stat()]
finally:
    sock.close()
(dest / "pyroute2-conntrack-stat.json").write_text(json.dumps(flat, indent=1) + "\n")
(dest / "pyroute2-nfctsocket-stat.json").write_text(json.dumps(raw, indent=1) + "\n")
"""


def capture(ns: str, dest: str) -> None:
    """Record ``ns``'s conntrack files and ``conntrack -S``/``-C``/pyroute2 answers."""
    sh(["ip", "netns", "exec", ns, sys.executable, "-c", _CAPTURE_WORKER, dest])
