"""Programs the lab runs inside a namespace: ``ip netns exec NS python workers.py NAME ARGS``.

Each worker is a function of its command-line arguments; ``command(name, *args)`` builds the
argument vector. They use the standard library only, except those that drive netagent
(``synced-check``, ``conntrack-both-paths``, ``conntrack-netlink``), which need the
repository on ``PYTHONPATH`` as the tests set it.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

HERE = pathlib.Path(__file__).resolve()


def command(name: str, *args: str) -> list[str]:
    """The argument vector that runs worker ``name`` with ``args``."""
    if name not in WORKERS:
        raise ValueError(f"no worker {name!r}")
    return [sys.executable, str(HERE), name, *args]


# --- conntrack ------------------------------------------------------------------------------

def udp_flood(argv: Sequence[str]) -> None:
    """Send argv[0] datagrams, each from its own source port (1024 + i: an ephemeral port
    could come back after close and reuse a flow), to a listener on 127.0.0.1:65535, for at
    most argv[1] seconds; print "<sent> <refused>". A datagram the kernel drops in conntrack
    (table full) fails with EPERM at sendto()."""
    count, limit = int(argv[0]), float(argv[1])
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


def tcp_hold(argv: Sequence[str]) -> None:
    """Open argv[0] TCP connections to a listener on 127.0.0.1 with data both ways (so each
    entry is ESTABLISHED and assured), print "ready <n>", then hold them until stdin closes
    or argv[1] seconds pass."""
    count, hold = int(argv[0]), float(argv[1])
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
        c.sendall(b"x")
        a.recv(1)
        a.sendall(b"y")
        c.recv(1)
        keep += [c, a]
    print("ready", len(keep) // 2, flush=True)
    select.select([sys.stdin], [], [], max(0.0, deadline - time.monotonic()))


def _syn(sport: int) -> bytes:
    lo = socket.inet_aton("127.0.0.1")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, socket.IPPROTO_TCP, 0, lo, lo)
    return ip + struct.pack("!HHIIBBHHH", sport, 9, 1, 0, 5 << 4, 0x02, 65535, 0, 0)


def race(argv: Sequence[str]) -> None:
    """argv[1] rounds (at most argv[2] seconds) in which two threads, released together by a
    barrier, send the first packet of one new flow to 127.0.0.1. argv[0] "udp": one UDP
    socket shared by both threads (glibc's A/AAAA pattern), a new socket each round. "tcp":
    the same hand-made SYN from two raw sockets (TCP port 9, where nothing listens), a new
    source port each round. Prints the rounds run."""
    proto, rounds, limit = argv[0], int(argv[1]), float(argv[2])
    deadline = time.monotonic() + limit
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    barrier = threading.Barrier(3, timeout=10)
    shared: dict[str, Any] = {}

    def racer(cpu: int) -> None:
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
    # A SYN nobody answers stays in the table for nf_conntrack_tcp_timeout_syn_sent (120 s):
    # a call that reused the previous call's source ports would find every flow already
    # there and race nothing. So each call starts at a random port of the 50,000.
    first_port = random.randrange(50000)
    for i in range(rounds):
        if time.monotonic() > deadline:
            break
        if proto == "udp":
            shared["sock"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        else:
            shared["packet"] = _syn(10000 + (first_port + i) % 50000)
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


def capture(argv: Sequence[str]) -> None:
    """Write the files and tool outputs a conntrack fixture needs under argv[0]. pyroute2's
    answers are stored as JSON (the decoded message dicts)."""
    from pyroute2 import Conntrack, NFCTSocket

    dest = pathlib.Path(argv[0])
    for rel in ("net/stat/nf_conntrack", "sys/net/netfilter/nf_conntrack_count",
                "sys/net/netfilter/nf_conntrack_max", "sys/net/netfilter/nf_conntrack_buckets",
                "sys/kernel/osrelease"):
        target = dest / "proc" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(pathlib.Path("/proc", rel).read_text())
    conntrack = shutil.which("conntrack") or "conntrack"
    for name, args in (("conntrack-S.txt", [conntrack, "-S"]),
                       ("conntrack-C.txt", [conntrack, "-C"])):
        (dest / name).write_text(subprocess.run(args, capture_output=True, text=True,
                                                check=True, timeout=30).stdout)
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


def synced_check(argv: Sequence[str]) -> None:
    """netagent's own runner on the conntrack source with its pause replaced by a handshake
    (print "baseline taken", wait for a line on stdin), so a test acts exactly between the
    baseline sample and the collection; prints the report as JSON."""
    from netagent import runner
    from netagent.config import Config
    from netagent.report.json import to_dict
    from netagent.wiring import build_sources

    def pause(seconds: float) -> None:
        print("baseline taken", flush=True)
        sys.stdin.readline()

    config = Config()
    report = runner.check_once(build_sources(config, only=["conntrack"]), config,
                               interval=1.0, sleep=pause)
    print(json.dumps(to_dict(report), default=str), flush=True)


def conntrack_both_paths(argv: Sequence[str]) -> None:
    """The conntrack statistics read from procfs and over netlink, as JSON."""
    from netagent.sources.conntrack import ConntrackSource

    procfs = ConntrackSource(stats_from="procfs").collect()
    netlink = ConntrackSource(stats_from="netlink").collect()
    assert procfs.stats is not None and netlink.stats is not None
    print(json.dumps({"count": procfs.count, "entries": procfs.stats.entries,
                      "procfs": dict(procfs.stats.counters),
                      "netlink": dict(netlink.stats.counters)}))


def conntrack_netlink(argv: Sequence[str]) -> None:
    """Whether the netlink statistics were read: "<stats missing> <count read> <problem>"."""
    from netagent.sources.conntrack import ConntrackSource

    obs = ConntrackSource(stats_from="netlink").collect()
    print(obs.stats is None, obs.count is not None, obs.problems.get("stats"))


def write_sysctl(argv: Sequence[str]) -> None:
    """netagent's executor writing argv[1] to sysctl argv[0] under /proc/sys; prints the
    outcome as JSON."""
    from netagent.remediation.executor import write_value
    from netagent.sources.sysctl import sysctl_path

    key, value = argv[0], int(argv[1])
    outcome = write_value(sysctl_path(pathlib.Path("/proc/sys"), key), value, key=key)
    print(json.dumps(outcome.__dict__))


# --- DNS and HTTP ---------------------------------------------------------------------------

# An A query for example.com (id 0x1234, recursion desired).
_QUERY = bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")


def dns_ready(argv: Sequence[str]) -> None:
    """Exit 0 when the DNS server on argv[0] port 53 answers one UDP query within 0.3 s."""
    s = socket.socket(socket.AF_INET6 if ":" in argv[0] else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    s.connect((argv[0], 53))
    s.send(_QUERY)
    try:
        s.recv(512)
    except OSError:
        sys.exit(1)


def get(argv: Sequence[str]) -> None:
    """Print the body of one GET of argv[0] (timeout argv[1] seconds, default 5)."""
    timeout = float(argv[1]) if len(argv) > 1 else 5.0
    with urllib.request.urlopen(argv[0], timeout=timeout) as resp:
        print(resp.read().decode())


def timed_get(argv: Sequence[str]) -> None:
    """GET argv[0] argv[1] times; print the fastest time and the body's size."""
    url, runs = argv[0], int(argv[1])
    times = []
    body = b""
    for _ in range(runs):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as resp:
            body = resp.read()
        times.append(time.perf_counter() - start)
    print(min(times), len(body))


WORKERS: dict[str, Callable[[Sequence[str]], None]] = {
    "udp-flood": udp_flood, "tcp-hold": tcp_hold, "race": race, "capture": capture,
    "synced-check": synced_check, "conntrack-both-paths": conntrack_both_paths,
    "conntrack-netlink": conntrack_netlink, "write-sysctl": write_sysctl,
    "dns-ready": dns_ready, "get": get,
    "timed-get": timed_get,
}


def main(argv: Sequence[str]) -> None:
    if not argv or argv[0] not in WORKERS:
        raise SystemExit(f"usage: workers.py {{{','.join(WORKERS)}}} ARGS...")
    WORKERS[argv[0]](argv[1:])


if __name__ == "__main__":
    # Run as a script, this directory comes first on the path, and its modules (dns.py)
    # would shadow the libraries of the same name that netagent imports.
    sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != HERE.parent]
    main(sys.argv[1:])
