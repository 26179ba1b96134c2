"""Overlay rtnetlink dumps recorded on a lab node, checked against iproute2's JSON view.

The fixtures come from ``scripts/record-overlay-fixtures``: flannel.1 with five peers (peer 2
lost its neighbour, peer 4 its FDB entry), vxlan.calico with two peers and /26 routes,
cilium_vxlan in external mode, and a bridge and pod-side neighbours that must be skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from netagent.parse.netlink import NTF_SELF, NUD_NOARP, NUD_PERMANENT
from netagent.parse.overlay import (
    decode_device_neighbours,
    decode_fdb,
    decode_link_details,
    decode_routes,
    neighbour_dump_request,
)


def raw(fixtures: Path, name: str) -> bytes:
    return (fixtures / "overlay" / name).read_bytes()


def ip_json(fixtures: Path, name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((fixtures / "overlay" / name).read_text())
    return data


@pytest.fixture
def index(fixtures: Path) -> dict[str, int]:
    return {link.name: link.ifindex for link in decode_link_details(raw(fixtures, "links.bin"))}


def test_links_match_ip_link(fixtures: Path) -> None:
    links = {link.name: link for link in decode_link_details(raw(fixtures, "links.bin"))}
    for shown in ip_json(fixtures, "ip-link.json"):
        link = links[shown["ifname"]]
        info = shown.get("linkinfo", {})
        assert link.ifindex == shown["ifindex"]
        assert link.mac == shown["address"]
        assert link.kind == info.get("info_kind", "")
        assert link.up == ("UP" in shown["flags"])
        if link.kind == "vxlan":
            data = info["info_data"]
            assert (link.vni, link.port, link.learning) == (data["id"], data["port"],
                                                            data["learning"])
            assert link.local == data.get("local", data.get("local6"))
        else:
            assert link.vni is None and link.local is None
    assert links["flannel.1"].local == "192.168.0.1" and links["flannel.1"].port == 8472
    assert links["cilium_vxlan"].local is None


@pytest.mark.parametrize("device", ["flannel.1", "vxlan.calico", "cilium_vxlan", "cni0"])
def test_fdb_of_one_device_matches_bridge_fdb(fixtures: Path, index: dict[str, int],
                                              device: str) -> None:
    got = decode_fdb(raw(fixtures, "fdb.bin"), ifindex=index[device])
    shown = [e for e in ip_json(fixtures, "bridge-fdb.json") if e["ifname"] == device]
    assert sorted((e.mac, e.dst) for e in got) == sorted((e["mac"], e.get("dst"))
                                                         for e in shown)
    for entry in got:
        assert entry.state & NUD_PERMANENT
    if device == "flannel.1":
        assert len(got) == 4  # peer 4's entry was dropped
        assert all(e.flags & NTF_SELF for e in got)


@pytest.mark.parametrize("device", ["flannel.1", "vxlan.calico", "vpod0"])
def test_neighbours_of_one_device_match_ip_neigh(fixtures: Path, index: dict[str, int],
                                                 device: str) -> None:
    got = decode_device_neighbours(raw(fixtures, "neigh4.bin"), ifindex=index[device])
    shown = [n for n in ip_json(fixtures, "ip-neigh.json") if n["dev"] == device]
    assert sorted((n.ip, n.mac) for n in got) == sorted((n["dst"], n["lladdr"]) for n in shown)
    if device == "flannel.1":
        assert "10.244.2.0" not in {n.ip for n in got}  # peer 2's entry was dropped


@pytest.mark.parametrize("device", ["flannel.1", "vxlan.calico", "cilium_vxlan"])
def test_routes_of_one_device_match_ip_route(fixtures: Path, index: dict[str, int],
                                             device: str) -> None:
    got = decode_routes(raw(fixtures, "routes.bin"), ifindex=index[device])
    shown = [r for r in ip_json(fixtures, "ip-route.json") if r["dev"] == device]
    assert sorted(got) == sorted((r["dst"], r.get("gateway"), "onlink" in r["flags"])
                                 for r in shown)
    if device == "vxlan.calico":
        assert len(got) == 3  # routes per IPAM block, two via the same tunnel address


def test_ipv6_device_neighbours_and_routes(fixtures: Path, index: dict[str, int]) -> None:
    dev = index["flannel-v6.1"]
    got = decode_device_neighbours(raw(fixtures, "neigh6.bin"), ifindex=dev, family="ipv6")
    shown = [n for n in ip_json(fixtures, "ip-neigh6.json") if n["dev"] == "flannel-v6.1"]
    # the kernel's own multicast entry (NOARP) is in the dump; `ip neigh show` hides it
    assert [(n.ip, n.state) for n in got if n.state == NUD_NOARP] == [("ff02::16", NUD_NOARP)]
    assert sorted((n.ip, n.mac) for n in got if n.state != NUD_NOARP) == sorted(
        (n["dst"], n["lladdr"]) for n in shown)
    assert len(shown) == 2
    # an IPv4 decode of the same bytes finds nothing: families are not mixed
    assert decode_device_neighbours(raw(fixtures, "neigh6.bin"), ifindex=dev) == []
    routes = decode_routes(raw(fixtures, "routes6.bin"), ifindex=dev, family="ipv6")
    shown = [r for r in ip_json(fixtures, "ip-route6.json") if r["dev"] == "flannel-v6.1"]
    # iproute2 prints a /128 host route without its length
    assert sorted(routes) == sorted(
        (r["dst"] if "/" in r["dst"] else r["dst"] + "/128", r.get("gateway"),
         "onlink" in r["flags"]) for r in shown)
    assert ("fc00:0:0:1::/64", "fc00:0:0:1::", True) in routes
    fdb = decode_fdb(raw(fixtures, "fdb.bin"), ifindex=dev)
    assert sorted(e.dst for e in fdb) == ["fd00:168::2", "fd00:168::3"]


def test_neighbour_request_carries_the_device_filter() -> None:
    plain = neighbour_dump_request("ipv4", seq=7)
    filtered = neighbour_dump_request("ipv4", ifindex=4, seq=7)
    assert len(filtered) == len(plain) + 8
    assert filtered[-8:] == bytes([8, 0, 8, 0, 4, 0, 0, 0])  # NDA_IFINDEX = 4
