"""``overlay.<device>`` judged on records: the recorded lab tables and small edge cases."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from netagent.checks import neighbours, overlay, registry
from netagent.config import Config
from netagent.model import (
    ClusterInfo,
    FdbEntry,
    KernelVersion,
    NodePeer,
    Observations,
    OverlayNeighbour,
    OverlayRoute,
    OverlaySnapshot,
    Status,
    VxlanDevice,
)
from netagent.parse.overlay import (
    decode_device_neighbours,
    decode_fdb,
    decode_link_details,
    decode_routes,
)
from netagent.sources.overlay import cni_of, family_of

KERNEL = KernelVersion("6.18.44", 6, 18, 44)
OLD_KERNEL = KernelVersion("4.19.0-27-amd64", 4, 19, 0)
PERM = 0x80 | 0x40  # how the kernel reports a PERMANENT FDB entry (NUD_PERMANENT|NUD_NOARP)


def recorded(fixtures: Path) -> OverlaySnapshot:
    """The recorded dumps turned into a snapshot, as OverlaySource.collect() builds it."""
    d = fixtures / "overlay"
    links = decode_link_details((d / "links.bin").read_bytes())
    fdb = (d / "fdb.bin").read_bytes()
    neigh = (d / "neigh4.bin").read_bytes() + (d / "neigh6.bin").read_bytes()
    routes = (d / "routes.bin").read_bytes() + (d / "routes6.bin").read_bytes()
    devices = []
    for link in links:
        if link.kind != "vxlan":
            continue
        cni = cni_of(link.name)
        family = family_of(link.name, link.local)
        tables = cni != "cilium"
        devices.append(VxlanDevice(
            name=link.name, ifindex=link.ifindex, mac=link.mac, vni=link.vni,
            local=link.local, port=link.port, learning=link.learning, up=link.up, cni=cni,
            family=family,
            fdb=tuple(decode_fdb(fdb, ifindex=link.ifindex)) if tables else None,
            neighbours=tuple(decode_device_neighbours(neigh, ifindex=link.ifindex,
                                                      family=family)) if tables else None,
            routes=tuple(decode_routes(routes, ifindex=link.ifindex, family=family))
            if tables else None))
    return OverlaySnapshot(namespace="host", kernel=KERNEL, devices=tuple(devices))


def flannel_peer(k: int, *, ip: str | None = None) -> NodePeer:
    return NodePeer(name=f"node-{k:04d}", flannel_public_ip=ip or f"192.168.0.{k + 1}",
                    flannel_vtep_mac=f"02:0a:58:00:00:{k:02x}", flannel_backend_type="vxlan")


def calico_peer(k: int) -> NodePeer:
    tunnel = {0: "10.65.0.0", 1: "10.65.1.0", 2: "10.65.2.128"}[k]
    return NodePeer(name=f"kube{k}", calico_ipv4_address=f"192.168.0.{10 + k}" if k else
                    "192.168.0.1", calico_vxlan_tunnel_addr=tunnel,
                    calico_vxlan_mac=f"66:d5:3a:10:00:{k:02x}")


def run(snapshot: OverlaySnapshot, *, cluster: ClusterInfo | None = None,
        nodes: int | None = None, cluster_error: str | None = None
        ) -> dict[str, overlay.CheckResult]:
    current: dict[str, object] = {"overlay": snapshot}
    if cluster is not None:
        current["cluster"] = cluster
    errors = {"cluster": cluster_error} if cluster_error else {}
    obs = Observations(current=current, errors=errors)
    results = registry.evaluate(obs, Config(nodes=nodes), sources=["overlay", "cluster"])
    return {r.id: r for r in results}


def test_recorded_lab_by_count_misses_two_peers(fixtures: Path) -> None:
    results = run(recorded(fixtures), nodes=6)
    flannel = results["overlay.flannel.1"]
    assert flannel.status is Status.CRITICAL
    assert (flannel.observed, flannel.limit) == (3, 5)
    assert flannel.summary.startswith("flannel.1 (flannel): 2 of 5 peers missing")
    ev = flannel.evidence
    assert (ev["fdb_entries"], ev["neighbours"], ev["routes"]) == (4, 4, 5)
    assert ev["routes_without_neighbour"] == ["10.244.2.0/24 via 10.244.2.0"]
    assert ev["neighbours_without_fdb"] == ["10.244.4.0 -> 02:0a:58:00:00:04"]
    assert ev["peers_missing"] == 2 and ev["cluster_nodes"] == 6
    assert "kubectl -n kube-flannel delete pod" in flannel.advice
    assert "bridge fdb show dev flannel.1" in flannel.advice
    # Calico: one route per IPAM block, so 3 routes for 2 peers is consistent
    calico = results["overlay.vxlan.calico"]
    assert (calico.status, calico.observed, calico.limit) == (Status.CRITICAL, 2, 5)
    cilium = results["overlay.cilium_vxlan"]
    assert cilium.status is Status.OK and "not applicable" in cilium.summary


def test_recorded_lab_by_annotations_names_the_nodes(fixtures: Path) -> None:
    peers = tuple(flannel_peer(k) for k in range(6))
    results = run(recorded(fixtures), cluster=ClusterInfo(6, "Kubernetes API x", peers))
    flannel = results["overlay.flannel.1"]
    assert flannel.status is Status.CRITICAL
    assert flannel.evidence["this_node"] == "node-0000"
    assert flannel.evidence["missing"] == [
        "node-0002: no neighbour entry for 02:0a:58:00:00:02",
        "node-0004: no FDB entry for 02:0a:58:00:00:04",
    ]
    assert "2 of 5 peers missing or incomplete: node-0002" in flannel.summary
    # a node flannel has not registered yet is not expected to have entries
    newcomer = (*peers, NodePeer(name="node-0006"))
    flannel = run(recorded(fixtures), cluster=ClusterInfo(7, "api", newcomer))[
        "overlay.flannel.1"]
    assert flannel.evidence["peers_expected"] == 5
    assert flannel.evidence["notes"][0].startswith("1 nodes carry no flannel VXLAN annotations")
    assert "spec.nodeName=node-0000" in flannel.advice


def test_complete_overlay_is_ok_by_count_and_by_annotations(fixtures: Path) -> None:
    snap = _repaired(recorded(fixtures))
    by_count = run(snap, nodes=6)["overlay.flannel.1"]
    assert by_count.status is Status.OK, by_count.summary
    assert by_count.summary == ("flannel.1 (flannel): 5 of 5 peers complete "
                                "(FDB 5, neighbours 5, routes 5)")
    assert by_count.advice == ""
    peers = tuple(flannel_peer(k) for k in range(6))
    by_names = run(snap, cluster=ClusterInfo(6, "Kubernetes API x", peers))["overlay.flannel.1"]
    assert by_names.status is Status.OK
    assert by_names.evidence["expected_from"] == "node annotations (Kubernetes API x)"
    assert overlay.PODCIDR_NOTE in by_names.evidence["notes"]


def test_unknown_count_is_unknown_and_says_why(fixtures: Path) -> None:
    snap = _repaired(recorded(fixtures))
    result = run(snap, cluster_error="no Kubernetes credentials: no in-cluster service account")
    flannel = result["overlay.flannel.1"]
    assert flannel.status is Status.UNKNOWN
    assert "consistent with each other" in flannel.summary
    assert "node count unknown: no Kubernetes credentials: no in-cluster" in flannel.summary
    assert "cluster.nodes" not in result  # the overlay check already says it


def test_node_that_left_leaves_stale_entries(fixtures: Path) -> None:
    snap = _repaired(recorded(fixtures))
    peers = tuple(flannel_peer(k) for k in range(6) if k != 3)
    result = run(snap, cluster=ClusterInfo(5, "api", peers))["overlay.flannel.1"]
    assert result.status is Status.WARNING
    assert result.evidence["stale"] == [
        "02:0a:58:00:00:03 (FDB -> 192.168.0.4; neighbour 10.244.3.0)"]
    assert "bridge fdb del MAC dev flannel.1" in result.advice
    by_count = run(snap, nodes=5)["overlay.flannel.1"]
    assert by_count.status is Status.WARNING and by_count.evidence["extra_peers"] == 1


def test_wrong_destination_is_critical(fixtures: Path) -> None:
    snap = _repaired(recorded(fixtures))
    peers = tuple(flannel_peer(k, ip="192.168.9.9" if k == 5 else None) for k in range(6))
    result = run(snap, cluster=ClusterInfo(6, "api", peers))["overlay.flannel.1"]
    assert result.status is Status.CRITICAL
    assert result.evidence["missing"] == [
        "node-0005: FDB entry for 02:0a:58:00:00:05 points at 192.168.0.6 instead of "
        "192.168.9.9"]
    assert result.evidence["wrong_destination"] == [
        "node-0005: FDB sends 02:0a:58:00:00:05 to 192.168.0.6, not 192.168.9.9"]


def test_calico_annotations_check_the_tunnel_address(fixtures: Path) -> None:
    peers = tuple(calico_peer(k) for k in range(3))
    calico = run(recorded(fixtures), cluster=ClusterInfo(3, "api", peers))[
        "overlay.vxlan.calico"]
    assert calico.status is Status.OK, calico.summary
    assert (calico.observed, calico.limit) == (2, 2)
    moved = (*peers[:2], dataclasses.replace(peers[2], calico_vxlan_tunnel_addr="10.65.3.0"))
    calico = run(recorded(fixtures), cluster=ClusterInfo(3, "api", moved))[
        "overlay.vxlan.calico"]
    assert calico.status is Status.CRITICAL
    assert calico.evidence["missing"] == [
        "kube2: neighbour 10.65.3.0 is missing, not 66:d5:3a:10:00:02"]


def test_ipv6_flannel_device_uses_the_v6_annotations(fixtures: Path) -> None:
    peers = tuple(NodePeer(name=f"node-{k:04d}", flannel_vtep_mac=f"02:0a:58:00:00:{k:02x}",
                           flannel_public_ip=f"192.168.0.{k + 1}",
                           flannel_vtep_mac_v6=f"02:0a:56:00:00:{k:02x}",
                           flannel_public_ipv6=f"fd00:168::{k + 1}") for k in range(3))
    result = run(recorded(fixtures), cluster=ClusterInfo(3, "api", peers))["overlay.flannel-v6.1"]
    assert result.status is Status.OK, result.summary
    ev = result.evidence
    assert (ev["family"], ev["routes"], ev["routes_direct"]) == ("ipv6", 2, 2)
    assert (ev["neighbours"], ev["neighbours_noarp"]) == (2, 1)  # ff02::16 is not a peer
    assert ev["this_node"] == "node-0000" and (result.observed, result.limit) == (2, 2)
    moved = (*peers[:2], dataclasses.replace(peers[2], flannel_public_ipv6="fd00:168::99"))
    result = run(recorded(fixtures), cluster=ClusterInfo(3, "api", moved))[
        "overlay.flannel-v6.1"]
    assert result.status is Status.CRITICAL
    assert result.evidence["missing"] == [
        "node-0002: FDB entry for 02:0a:56:00:00:02 points at fd00:168::3 instead of "
        "fd00:168::99"]


def test_device_down_unreadable_and_absent() -> None:
    dev = VxlanDevice(name="flannel.1", ifindex=4, mac="02:0a:58:00:00:00", vni=1,
                      local="192.168.0.1", port=8472, learning=False, up=False,
                      cni="flannel", family="ipv4", fdb=(), neighbours=(), routes=())
    down = run(OverlaySnapshot("host", KERNEL, (dev,)), nodes=1)["overlay.flannel.1"]
    assert down.status is Status.CRITICAL and "device is down" in down.summary
    unread = dataclasses.replace(dev, up=True, fdb=None,
                                 problems={"fdb": "FDB of flannel.1: netlink error 1"})
    result = run(OverlaySnapshot("host", KERNEL, (unread,)), nodes=3)["overlay.flannel.1"]
    assert result.status is Status.UNKNOWN and "netlink error 1" in result.summary
    none = run(OverlaySnapshot("host", KERNEL, ()), nodes=3)["overlay"]
    assert none.status is Status.OK and "no VXLAN device" in none.summary
    failed = registry.evaluate(Observations(current={}, errors={"overlay": "boom"}), Config(),
                               sources=["overlay"])
    assert [(r.id, r.status, r.summary) for r in failed] == [
        ("overlay", Status.UNKNOWN, "VXLAN overlay: boom")]


def test_single_node_cluster_expects_no_peers() -> None:
    dev = VxlanDevice(name="flannel.1", ifindex=4, mac=None, vni=1, local=None, port=8472,
                      learning=False, up=True, cni="flannel", family="ipv4", fdb=(),
                      neighbours=(), routes=())
    result = run(OverlaySnapshot("host", KERNEL, (dev,)), nodes=1)["overlay.flannel.1"]
    assert (result.status, result.observed, result.limit) == (Status.OK, 0, 0)


def test_old_kernel_notes_permanent_entries_count(fixtures: Path) -> None:
    snap = dataclasses.replace(recorded(fixtures), kernel=OLD_KERNEL)
    result = run(snap, nodes=6)["overlay.flannel.1"]
    assert any("counts these 4 PERMANENT" in n for n in result.evidence["notes"])
    assert "On kernel 4.19.0-27-amd64 each peer's PERMANENT neighbour" in result.advice


def test_unknown_device_is_judged_on_consistency_only() -> None:
    dev = VxlanDevice(
        name="vx100", ifindex=9, mac="aa:bb:cc:00:00:01", vni=100, local="10.1.0.1",
        port=4789, learning=False, up=True, cni="", family="ipv4",
        fdb=(FdbEntry("aa:bb:cc:00:00:02", "10.1.0.2", PERM, 2),),
        neighbours=(OverlayNeighbour("172.30.0.2", "aa:bb:cc:00:00:02", 0x80),),
        routes=(OverlayRoute("172.30.2.0/24", "172.30.0.2", True),))
    result = run(OverlaySnapshot("host", KERNEL, (dev,)), nodes=50)["overlay.vx100"]
    assert result.status is Status.UNKNOWN
    assert "not a device netagent knows" in result.summary
    broken = dataclasses.replace(dev, fdb=())
    assert run(OverlaySnapshot("host", KERNEL, (broken,)))["overlay.vx100"].status \
        is Status.CRITICAL
    flooded = dataclasses.replace(dev, fdb=(FdbEntry("00:00:00:00:00:00", "10.1.0.9", PERM, 2),))
    result = run(OverlaySnapshot("host", KERNEL, (flooded,)))["overlay.vx100"]
    assert result.status is Status.UNKNOWN and result.evidence["flood_entries"] == 1


@pytest.mark.parametrize("present, expected", [
    ({"cluster": ClusterInfo(605, "Kubernetes API https://10.0.0.1:6443")},
     (Status.OK, "605 nodes (from Kubernetes API https://10.0.0.1:6443)")),
    ({}, (Status.UNKNOWN, "cluster size: HTTP 403: Forbidden")),
])
def test_cluster_check_only_without_overlay(present: dict[str, object],
                                            expected: tuple[Status, str]) -> None:
    errors = {} if present else {"cluster": "HTTP 403: Forbidden"}
    (result,) = registry.evaluate(Observations(current=present, errors=errors), Config(),
                                  sources=["cluster"])
    assert result.id == "cluster.nodes" and (result.status, result.summary) == expected


def _repaired(snap: OverlaySnapshot) -> OverlaySnapshot:
    """The recorded flannel.1 with peers 2 and 4 put back as flanneld would."""
    devices = []
    for dev in snap.devices:
        if dev.name == "flannel.1":
            assert dev.fdb is not None and dev.neighbours is not None
            dev = dataclasses.replace(
                dev,
                fdb=(*dev.fdb, FdbEntry("02:0a:58:00:00:04", "192.168.0.5", PERM, 2)),
                neighbours=(*dev.neighbours,
                            OverlayNeighbour("10.244.2.0", "02:0a:58:00:00:02", 0x80)))
        devices.append(dev)
    return dataclasses.replace(snap, devices=tuple(devices))


def test_cluster_settings_load_and_wire(tmp_path: Path) -> None:
    from netagent.config import ClusterConfig, load
    from netagent.errors import ConfigError
    from netagent.sources.cluster import ClusterSource
    from netagent.sources.overlay import OverlaySource
    from netagent.wiring import build_sources

    path = tmp_path / "netagent.yaml"
    path.write_text("nodes: 41\ncluster:\n  kubeconfig: /etc/k\n  poll_seconds: 600\n")
    config = load(path)
    assert config.cluster == ClusterConfig(kubeconfig="/etc/k", poll_seconds=600.0)
    sources = build_sources(config)
    cluster = sources["cluster"]
    assert isinstance(cluster, ClusterSource) and isinstance(sources["overlay"], OverlaySource)
    assert cluster.want_peers and cluster.configured_nodes == 41
    alone = build_sources(config, only=["cluster"])["cluster"]
    assert isinstance(alone, ClusterSource) and not alone.want_peers
    assert "cluster" not in build_sources(config, only=["overlay"])
    path.write_text("cluster:\n  poll_seconds: 1\n")
    with pytest.raises(ConfigError, match=r"'cluster\.poll_seconds' must be between 10 and"):
        load(path)
    path.write_text("cluster:\n  kubecfg: /x\n")
    with pytest.raises(ConfigError, match=r"unknown key 'cluster\.kubecfg'"):
        load(path)


def test_cluster_nodes_prefers_the_cluster_reading() -> None:
    config = Config(nodes=41)
    read = Observations(current={"cluster": ClusterInfo(605, "Kubernetes API x")})
    assert neighbours.cluster_nodes(read, config) == 605
    assert neighbours.cluster_nodes(Observations(current={}), config) == 41
    assert neighbours.cluster_nodes(Observations(current={}), Config()) is None
