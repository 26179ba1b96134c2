"""VXLAN overlay devices and the tables that make their peers reachable.

What a person would type, for each VXLAN device (``ip -d link show type vxlan``)::

    bridge fdb show dev flannel.1        # MAC of each remote VTEP -> its node's IP
    ip -4 neigh show dev flannel.1       # each peer's subnet address -> its VTEP MAC
    ip route show dev flannel.1          # each peer's pod subnet via that address, onlink

Only the agent's own network namespace is read (an agent runs with ``hostNetwork``).
The dumps are decoded by hand (``parse.overlay``) rather than with pyroute2: the FDB, neighbour
and route dumps hold every interface's entries, and on a node with a large ARP table pyroute2
decodes all of them into objects (seconds and hundreds of MB at 50,000 entries, docs/design.md §2.1)
only for the few on the overlay device to be kept.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from netagent.config import Config
from netagent.errors import NetagentError, ParseError, SourceError
from netagent.model import OverlaySnapshot, VxlanDevice
from netagent.parse.kernel import parse_release
from netagent.parse.netlink import link_dump_request
from netagent.parse.netlink import neighbour_dump_request as plain_neighbour_request
from netagent.parse.overlay import (
    LinkDetail,
    decode_device_neighbours,
    decode_fdb,
    decode_link_details,
    decode_routes,
    neighbour_dump_request,
    route_dump_request,
)
from netagent.sources import netns
from netagent.sources.procfs import ProcFS
from netagent.sources.rtnl import Dump, next_seq


def cni_of(name: str) -> str:
    """Which plugin a VXLAN device name belongs to, by the names the plugins use."""
    if name.startswith(("flannel.", "flannel-v6.")):
        return "flannel"
    if name in ("vxlan.calico", "vxlan-v6.calico"):
        return "calico"
    if name.startswith("cilium_"):
        return "cilium"
    return ""


def family_of(name: str, local: str | None) -> str:
    """The inner family: flannel and Calico name their IPv6 devices; else the underlay's."""
    if name.startswith("flannel-v6.") or name == "vxlan-v6.calico":
        return "ipv6"
    if name.startswith("flannel.") or name == "vxlan.calico":
        return "ipv4"
    return "ipv6" if local is not None and ":" in local else "ipv4"


class OverlaySource:
    """Reads every VXLAN device of one network namespace with its FDB, neighbours and routes."""

    name = "overlay"

    def __init__(self, *, namespace: netns.Namespace | None = None,
                 proc_root: str = "/proc") -> None:
        self.namespace = namespace or netns.Namespace(
            "host", f"{proc_root}/self/ns/net", 0, is_self=True)
        self.proc = ProcFS(proc_root)

    def sample(self) -> None:
        """Nothing to turn into a rate: the overlay is judged on one full reading."""
        return None

    def collect(self) -> OverlaySnapshot:
        try:
            kernel = parse_release(self.proc.read_text("sys/kernel/osrelease"))
        except NetagentError:
            kernel = parse_release(os.uname().release)
        sock = netns.netlink_socket(self.namespace)
        try:
            links = self._dump_links(sock)
            devices = tuple(self._device(sock, link) for link in links if link.kind == "vxlan")
        finally:
            sock.close()
        return OverlaySnapshot(namespace=self.namespace.name, kernel=kernel, devices=devices)

    def _dump_links(self, sock: socket.socket) -> list[LinkDetail]:
        dump = Dump(sock, link_dump_request(seq=next_seq()),
                    what=f"links in {self.namespace.name}")
        try:
            return [link for chunk in dump.chunks() for link in decode_link_details(chunk)]
        except ParseError as err:
            raise SourceError(f"links in {self.namespace.name}: {err}") from err

    def _device(self, sock: socket.socket, link: LinkDetail) -> VxlanDevice:
        cni = cni_of(link.name)
        family = family_of(link.name, link.local)
        problems: dict[str, str] = {}
        fdb = neighbours = routes = None
        if cni != "cilium":  # Cilium keeps its tunnel endpoints in BPF maps, not here
            index = link.ifindex
            try:
                dump = Dump(sock, plain_neighbour_request("bridge", seq=next_seq()),
                            what=f"FDB of {link.name}")
                fdb = tuple(e for chunk in dump.chunks() for e in decode_fdb(chunk,
                                                                            ifindex=index))
            except SourceError as err:
                problems["fdb"] = str(err)
            except ParseError as err:
                problems["fdb"] = f"FDB of {link.name}: {err}"
            try:
                dump = Dump(sock, neighbour_dump_request(family, ifindex=index, seq=next_seq()),
                            what=f"neighbours of {link.name}")
                neighbours = tuple(n for chunk in dump.chunks()
                                   for n in decode_device_neighbours(chunk, ifindex=index,
                                                                     family=family))
            except SourceError as err:
                problems["neighbours"] = str(err)
            except ParseError as err:
                problems["neighbours"] = f"neighbours of {link.name}: {err}"
            try:
                dump = Dump(sock, route_dump_request(family, seq=next_seq()),
                            what=f"routes of {link.name}")
                routes = tuple(r for chunk in dump.chunks()
                               for r in decode_routes(chunk, ifindex=index, family=family))
            except SourceError as err:
                problems["routes"] = str(err)
            except ParseError as err:
                problems["routes"] = f"routes of {link.name}: {err}"
        return VxlanDevice(
            name=link.name, ifindex=link.ifindex, mac=link.mac, vni=link.vni,
            local=link.local, port=link.port, learning=link.learning, up=link.up, cni=cni,
            family=family, fdb=fdb, neighbours=neighbours, routes=routes, problems=problems,
        )


def from_config(config: Config, wanted: Sequence[str]) -> OverlaySource:
    return OverlaySource()
