"""A flannel-like VXLAN overlay with N peers inside a lab namespace, and its node list.

The node namespace ``nalab-<lab>-node`` gets an underlay link ``uplink0`` (192.168.0.1/16,
a veth whose other end sits in ``nalab-<lab>-underlay``) and ``flannel.1`` (VNI 1, UDP 8472,
nolearning, local 192.168.0.1, address 10.244.0.0/32), set up the way flanneld does it for
each remote node K::

    ip neigh add <subnet K>.0 lladdr <VtepMAC K> dev flannel.1 nud permanent
    bridge fdb append <VtepMAC K> dev flannel.1 dst <public IP K> self permanent
    ip route add <subnet K>.0/24 via <subnet K>.0 dev flannel.1 onlink

Every address is inside the lab (the /16 lives on the lab's own veth) and nothing is ever
sent: the tables are what is checked. ``node_list()`` gives the matching Kubernetes
``PartialObjectMetadataList`` (with flannel's annotations) for a fake API server.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from labkit.netlab import PREFIX, Lab, sh

DEVICE = "flannel.1"
VNI = 1
PORT = 8472
UNDERLAY = ipaddress.ip_network("192.168.0.0/16")
SELF_IP = "192.168.0.1"


def subnet(k: int) -> ipaddress.IPv4Network:
    """Peer ``k``'s pod /24 (k = 0 is this node): 10.244.0.0/24, 10.244.1.0/24, ..."""
    base = int(ipaddress.IPv4Address("10.244.0.0")) + (k << 8)
    return ipaddress.IPv4Network(f"{ipaddress.IPv4Address(base)}/24")


def public_ip(k: int) -> str:
    """Node ``k``'s underlay address, inside the lab's 192.168.0.0/16."""
    return str(ipaddress.IPv4Address(int(UNDERLAY.network_address) + 1 + k))


def vtep_mac(k: int) -> str:
    """Node ``k``'s VTEP MAC: locally administered, encodes ``k``."""
    b = (0x0A5800 << 16 | k).to_bytes(5, "big")
    return ":".join(f"{x:02x}" for x in (0x02, *b))


def node_name(k: int) -> str:
    return f"node-{k:04d}"


@dataclass
class Overlay:
    """``flannel.1`` in ``lab``'s node namespace with peers 1..``peers``."""

    lab: Lab
    peers: int = 0
    dropped: set[int] = field(default_factory=set)

    @property
    def underlay(self) -> str:
        return f"{PREFIX}{self.lab.name}-underlay"

    def up(self, peers: int) -> Overlay:
        node = self.lab.node
        if self.underlay not in self.lab.namespaces():
            sh(["ip", "netns", "add", self.underlay])
        sh(["ip", "-n", node, "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0",
            "netns", self.underlay])
        sh(["ip", "-n", node, "addr", "add", f"{SELF_IP}/{UNDERLAY.prefixlen}", "dev",
            "uplink0"])
        sh(["ip", "-n", node, "link", "set", "uplink0", "up"])
        sh(["ip", "-n", node, "link", "add", DEVICE, "address", vtep_mac(0), "type", "vxlan",
            "id", str(VNI), "local", SELF_IP, "dev", "uplink0", "dstport", str(PORT),
            "nolearning"])
        sh(["ip", "-n", node, "addr", "add", f"{subnet(0).network_address}/32", "dev", DEVICE])
        sh(["ip", "-n", node, "link", "set", DEVICE, "up"])
        self.add_peers(range(1, peers + 1))
        self.peers = peers
        return self

    def add_peers(self, ks: Iterable[int]) -> None:
        ks = list(ks)
        self._batch("bridge", [f"fdb append {vtep_mac(k)} dev {DEVICE} dst {public_ip(k)} "
                               "self permanent" for k in ks])
        self._batch("ip", [f"neigh replace {subnet(k).network_address} lladdr {vtep_mac(k)} "
                           f"dev {DEVICE} nud permanent" for k in ks])
        self._batch("ip", [f"route replace {subnet(k)} via {subnet(k).network_address} "
                           f"dev {DEVICE} onlink" for k in ks])
        self.dropped.difference_update(ks)

    def drop(self, ks: Iterable[int], *, parts: Iterable[str] = ("fdb", "neigh", "route")
             ) -> None:
        """Remove the chosen peers' entries (all three, or only some ``parts``)."""
        ks, parts = list(ks), set(parts)
        if "fdb" in parts:
            self._batch("bridge", [f"fdb del {vtep_mac(k)} dev {DEVICE} dst {public_ip(k)} self"
                                   for k in ks])
        if "route" in parts:
            self._batch("ip", [f"route del {subnet(k)} dev {DEVICE}" for k in ks])
        if "neigh" in parts:
            self._batch("ip", [f"neigh del {subnet(k).network_address} dev {DEVICE}"
                               for k in ks])
        self.dropped.update(ks)

    def corrupt(self, ks: Iterable[int], *, how: str) -> None:
        """Point chosen peers somewhere wrong: ``dst`` (FDB sends to another node's IP) or
        ``mac`` (the neighbour entry names a MAC no node has)."""
        ks = list(ks)
        if how == "dst":
            # one MAC, one destination: replace the peer's entry with a wrong one
            self._batch("bridge", [f"fdb del {vtep_mac(k)} dev {DEVICE} dst {public_ip(k)} self"
                                   for k in ks])
            self._batch("bridge", [f"fdb append {vtep_mac(k)} dev {DEVICE} "
                                   f"dst {public_ip(k + 5000)} self permanent" for k in ks])
        elif how == "mac":
            self._batch("ip", [f"neigh replace {subnet(k).network_address} "
                               f"lladdr {vtep_mac(k + 5000)} dev {DEVICE} nud permanent"
                               for k in ks])
        else:
            raise ValueError(f"corrupt how={how!r}: 'dst' or 'mac'")

    def _batch(self, tool: str, lines: list[str]) -> None:
        if not lines:
            return
        sh([tool, "-n", self.lab.node, "-batch", "-"], stdin="\n".join(lines) + "\n",
           timeout=600)

    def down(self) -> None:
        sh(["ip", "-n", self.lab.node, "link", "del", DEVICE], check=False)
        sh(["ip", "netns", "delete", self.underlay], check=False)


def node_list(nodes: int, *, absent: Iterable[int] = (), extra: Iterable[int] = ()
              ) -> dict[str, Any]:
    """The ``PartialObjectMetadataList`` an API server returns for nodes 0..nodes-1.

    ``absent`` leaves nodes out (they left the cluster: their entries are stale);
    ``extra`` adds nodes that have no entries on this node (missing peers). Annotations are
    the ones flanneld's kube subnet manager writes.
    """
    gone = set(absent)
    ks = [k for k in range(nodes) if k not in gone] + list(extra)
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "48151623"},
        "items": [_node(k) for k in ks],
    }


def _node(k: int) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {
            "name": node_name(k),
            "uid": f"5f1c1e2a-0000-4000-8000-{k:012d}",
            "resourceVersion": str(48150000 + k),
            "creationTimestamp": "2026-11-02T09:14:07Z",
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": node_name(k),
                "kubernetes.io/os": "linux",
            },
            "annotations": {
                "flannel.alpha.coreos.com/backend-data": json.dumps(
                    {"VNI": VNI, "VtepMAC": vtep_mac(k)}, separators=(",", ":")),
                "flannel.alpha.coreos.com/backend-type": "vxlan",
                "flannel.alpha.coreos.com/kube-subnet-manager": "true",
                "flannel.alpha.coreos.com/public-ip": public_ip(k),
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
    }
