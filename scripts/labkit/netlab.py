"""Namespaces, veth pairs and neighbour entries, made with iproute2 (`ip`)."""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "nalab-"
RUN_NETNS = Path("/run/netns")


def sh(args: Sequence[str], *, stdin: str | None = None, check: bool = True,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), input=stdin, text=True, capture_output=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[:2000]}")
    return proc


def mac_for(index: int, *, prefix: int = 0x02) -> str:
    """A locally administered unicast MAC that encodes ``index``."""
    b = index.to_bytes(5, "big")
    return ":".join(f"{x:02x}" for x in (prefix, *b))


@dataclass
class Lab:
    """One lab: a node namespace and pod namespaces joined to it by veth pairs.

    Pod ``k`` lives in ``nalab-<name>-pod<k>`` with ``eth0`` = 10.<200+k//256>.<k%256>.2/24
    and its peer ``vpod<k>`` in the node namespace holds .1.
    """

    name: str
    pods: int = 0
    made: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        return f"{PREFIX}{self.name}-node"

    def pod(self, k: int) -> str:
        return f"{PREFIX}{self.name}-pod{k}"

    def namespaces(self) -> list[str]:
        try:
            names = sorted(p.name for p in RUN_NETNS.iterdir())
        except FileNotFoundError:
            return []
        return [n for n in names if n.startswith(f"{PREFIX}{self.name}-")]

    def up(self, *, pods: int = 1) -> Lab:
        self.down()
        self._add_ns(self.node)
        sh(["ip", "-n", self.node, "link", "set", "lo", "up"])
        for k in range(pods):
            self.add_pod(k)
        self.pods = pods
        return self

    def _add_ns(self, ns: str) -> None:
        sh(["ip", "netns", "add", ns])
        self.made.append(ns)

    def add_pod(self, k: int) -> None:
        ns = self.pod(k)
        self._add_ns(ns)
        host_if, net = f"vpod{k}", self.pod_subnet(k)
        sh(["ip", "-n", self.node, "link", "add", host_if, "type", "veth", "peer", "name",
            "eth0", "netns", ns])
        sh(["ip", "-n", self.node, "addr", "add", f"{net[1]}/{net.prefixlen}", "dev", host_if])
        sh(["ip", "-n", self.node, "link", "set", host_if, "up"])
        sh(["ip", "-n", ns, "addr", "add", f"{net[2]}/{net.prefixlen}", "dev", "eth0"])
        sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])

    @staticmethod
    def pod_subnet(k: int) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{200 + k // 256}.{k % 256}.0/24")

    def add_neighbours(
        self,
        count: int,
        *,
        ns: str | None = None,
        dev: str = "vpod0",
        state: str = "stale",
        family: str = "ipv4",
        start: int = 0,
    ) -> tuple[int, int]:
        """Add ``count`` neighbour entries; returns (added, refused).

        Addresses come from 172.16.0.0/12 (IPv4) or fd00:6e61::/64 (IPv6) by index, so they
        never clash with the pod subnets and reach nothing. ``ip -batch -force`` goes on
        past errors; entries the kernel refuses (gc_thresh3 reached: ENOBUFS) are the ones
        missing from the namespace afterwards.
        """
        ns = ns or self.node
        lines = []
        for i in range(start, start + count):
            if family == "ipv4":
                addr = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("172.16.0.0")) + i))
            else:
                addr = str(ipaddress.IPv6Address(
                    int(ipaddress.IPv6Address("fd00:6e61::")) + i + 0x100))
            lines.append(f"neigh add {addr} lladdr {mac_for(i + 1)} dev {dev} nud {state}")
        if not lines:
            return 0, 0
        before = self.count_neighbours(ns=ns, family=family)
        sh(["ip", "-n", ns, "-force", "-batch", "-"], stdin="\n".join(lines) + "\n",
           check=False, timeout=600)
        added = self.count_neighbours(ns=ns, family=family) - before
        return added, count - added

    def touch_neighbours(self, count: int, *, state: str, ns: str | None = None,
                         dev: str = "vpod0") -> None:
        """Change the state of the first ``count`` IPv4 entries ``add_neighbours`` made:
        that moves their ``updated`` time (a no-op replace does not), so forced GC, which
        frees only entries not updated for 5 s, cannot free them."""
        base = int(ipaddress.IPv4Address("172.16.0.0"))
        lines = [f"neigh change {ipaddress.IPv4Address(base + i)} lladdr {mac_for(i + 1)} "
                 f"dev {dev} nud {state}" for i in range(count)]
        if lines:
            sh(["ip", "-n", ns or self.node, "-force", "-batch", "-"],
               stdin="\n".join(lines) + "\n", check=False, timeout=600)

    def count_neighbours(self, *, ns: str | None = None, family: str = "ipv4") -> int:
        out = sh(["ip", "-n", ns or self.node, "-4" if family == "ipv4" else "-6", "neigh",
                  "show", "nud", "all"]).stdout
        return sum(1 for line in out.splitlines() if line.strip())

    def flush_neighbours(self, *, ns: str | None = None) -> None:
        sh(["ip", "-n", ns or self.node, "neigh", "flush", "all"], check=False)

    def down(self) -> None:
        """Delete every namespace of this lab (also ones made by an earlier, crashed run)."""
        deadline = time.monotonic() + 60
        for ns in self.namespaces():
            sh(["ip", "netns", "delete", ns], check=False)
            if time.monotonic() > deadline:
                break
        self.made.clear()


@contextmanager
def lab(name: str, *, pods: int = 1) -> Iterator[Lab]:
    the_lab = Lab(name)
    try:
        yield the_lab.up(pods=pods)
    finally:
        the_lab.down()


@contextmanager
def sysctls(values: dict[str, str]) -> Iterator[None]:
    """Set sysctls for the duration of a block and restore every one, even on failure."""
    saved: dict[str, str] = {}
    try:
        for key, value in values.items():
            path = Path("/proc/sys") / key.replace(".", "/")
            saved[key] = path.read_text().strip()
            path.write_text(value)
        yield
    finally:
        for key, value in saved.items():
            (Path("/proc/sys") / key.replace(".", "/")).write_text(value)


def table_fulls(family: str = "ipv4") -> int:
    """The kernel's table_fulls for the family (the per-CPU column of /proc/net/stat)."""
    name = {"ipv4": "arp_cache", "ipv6": "ndisc_cache"}[family]
    header, *rows = Path(f"/proc/net/stat/{name}").read_text().split("\n")
    column = header.split().index("table_fulls")
    return sum(int(row.split()[column], 16) for row in rows if row.strip())
