"""``netagent check --only overlay`` inside a lab node with a flannel-like overlay.

Every namespace is made by the test (``nalab-ovk-*``) and removed even on failure; nothing is
sent over the overlay, and the fake API server listens on the lab namespace's own loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labkit.fakeapi import FakeAPI, listen_in_namespace
from labkit.netlab import Lab
from labkit.overlay import Overlay, node_list

from netagent.model import Status
from netagent.sources import netns
from netagent.sources.cluster import PAGE_SIZE
from netagent.sources.overlay import OverlaySource

ROOT = Path(__file__).resolve().parents[2]
LAB = "ovk"
PEERS = 40


@pytest.fixture
def lab() -> Iterator[Lab]:
    the_lab = Lab(LAB)
    try:
        yield the_lab.up(pods=1)
    finally:
        the_lab.down()
    assert not the_lab.namespaces()


def check(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KUBE", "NETAGENT_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        ["ip", "netns", "exec", lab.node, sys.executable, "-m", "netagent", "check", "--json",
         "--interval", "0", *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=str(ROOT))
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def test_complete_overlay_is_ok(lab: Lab) -> None:
    Overlay(lab).up(PEERS)
    code, report = check(lab, "--only", "overlay", "--nodes", str(PEERS + 1))
    flannel = by_id(report)["overlay.flannel.1"]
    assert (code, flannel["status"]) == (0, "ok"), flannel["summary"]
    assert (flannel["observed"], flannel["limit"]) == (PEERS, PEERS)
    ev = flannel["evidence"]
    assert (ev["fdb_entries"], ev["neighbours"], ev["routes"]) == (PEERS, PEERS, PEERS)
    assert (ev["vni"], ev["port"], ev["learning"]) == (1, 8472, False)
    # one node more in the cluster than peers here: a peer is missing
    code, report = check(lab, "--only", "overlay", "--nodes", str(PEERS + 2))
    assert code == int(Status.CRITICAL)
    assert by_id(report)["overlay.flannel.1"]["evidence"]["peers_missing"] == 1


def test_dropped_fdb_entries_are_critical_and_named(lab: Lab, tmp_path: Path) -> None:
    overlay = Overlay(lab).up(PEERS)
    dropped = [5, 17, 33]
    overlay.drop(dropped, parts=["fdb"])

    code, report = check(lab, "--only", "overlay", "--nodes", str(PEERS + 1))
    flannel = by_id(report)["overlay.flannel.1"]
    assert (code, flannel["status"]) == (2, "critical")
    assert flannel["evidence"]["peers_missing"] == 3
    assert sorted(flannel["evidence"]["neighbours_without_fdb"]) == sorted(
        f"10.244.{k}.0 -> 02:0a:58:00:00:{k:02x}" for k in dropped)

    # the same with the node list from a (fake) API server: the nodes are named
    sock = listen_in_namespace(lab.node)
    with FakeAPI(node_list(PEERS + 1), token="lab-token", sock=sock) as api:
        config = tmp_path / "kubeconfig"
        config.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
            "contexts:\n- name: lab\n  context: {cluster: lab, user: agent}\n"
            f"clusters:\n- name: lab\n  cluster: {{server: '{api.url}'}}\n"
            "users:\n- name: agent\n  user: {token: lab-token}\n")
        code, report = check(lab, "--only", "overlay", "--only", "cluster",
                             "--kubeconfig", str(config))
        first = f"/api/v1/nodes?limit={PAGE_SIZE}&resourceVersion=0"
        assert api.requests and api.requests[0][0] == first
    flannel = by_id(report)["overlay.flannel.1"]
    assert (code, flannel["status"]) == (2, "critical"), flannel["summary"]
    assert flannel["evidence"]["missing"] == [
        f"node-{k:04d}: no FDB entry for 02:0a:58:00:00:{k:02x}" for k in dropped]
    assert "node-0005" in flannel["summary"] and "node-0033" in flannel["summary"]
    assert flannel["evidence"]["this_node"] == "node-0000"
    assert flannel["evidence"]["cluster_nodes"] == PEERS + 1
    assert "spec.nodeName=node-0000" in flannel["recommendation"]
    assert {s["name"]: s["ok"] for s in report["sources"]} == {"overlay": True,
                                                                "cluster": True}


def test_corrupt_and_stale_entries(lab: Lab, tmp_path: Path) -> None:
    overlay = Overlay(lab).up(10)
    overlay.corrupt([4], how="dst")
    overlay.corrupt([6], how="mac")
    sock = listen_in_namespace(lab.node)
    # node 9 left the cluster: its entries are stale
    with FakeAPI(node_list(11, absent=[9]), sock=sock) as api:
        config = tmp_path / "kubeconfig"
        config.write_text(
            "current-context: lab\ncontexts:\n- name: lab\n  context: {cluster: lab}\n"
            f"clusters:\n- name: lab\n  cluster: {{server: '{api.url}'}}\n")
        code, report = check(lab, "--only", "overlay", "--only", "cluster",
                             "--kubeconfig", str(config))
    flannel = by_id(report)["overlay.flannel.1"]
    assert code == 2
    missing = flannel["evidence"]["missing"]
    assert missing[0].startswith("node-0004: FDB entry for 02:0a:58:00:00:04 points at "
                                 "192.168.19.")
    assert missing[1] == "node-0006: no neighbour entry for 02:0a:58:00:00:06"
    assert len(missing) == 2
    stale = flannel["evidence"]["stale"]
    assert any(s.startswith("02:0a:58:00:00:09 ") for s in stale)
    assert any(s.startswith("02:0a:58:00:13:8e ") for s in stale)  # the corrupt MAC


def test_unreachable_api_without_nodes_is_unknown(lab: Lab, tmp_path: Path) -> None:
    Overlay(lab).up(3)
    config = tmp_path / "kubeconfig"
    config.write_text("current-context: lab\ncontexts:\n- name: lab\n  context: {cluster: lab}\n"
                      "clusters:\n- name: lab\n  cluster: {server: 'http://127.0.0.1:9'}\n")
    code, report = check(lab, "--only", "overlay", "--only", "cluster",
                         "--kubeconfig", str(config))
    flannel = by_id(report)["overlay.flannel.1"]
    assert (code, flannel["status"]) == (3, "unknown")
    assert "connection refused" in flannel["summary"]
    sources = {s["name"]: s for s in report["sources"]}
    assert not sources["cluster"]["ok"] and "connection refused" in sources["cluster"]["error"]


def test_thousand_peers_are_read_fast(lab: Lab) -> None:
    start = time.monotonic()
    overlay = Overlay(lab).up(1000)
    built = time.monotonic() - start
    overlay.drop(range(901, 1001))  # peers 1..1000: 900 stay
    ns = netns.Namespace(lab.node, f"/run/netns/{lab.node}", 0)
    start = time.monotonic()
    snap = OverlaySource(namespace=ns).collect()
    took = time.monotonic() - start
    (dev,) = snap.devices
    assert dev.fdb_entries == 900 and dev.neighbours is not None and len(dev.neighbours) == 900
    assert built < 30 and took < 2.0, (built, took)
    print(f"\n1000-peer overlay built in {built:.2f} s; 900 peers read in {took * 1000:.0f} ms")


def test_kernel_filters_the_neighbour_dump_by_device(lab: Lab) -> None:
    """NDA_IFINDEX in the request makes the kernel skip other devices' entries, so a host
    with a large ARP table costs the overlay source nothing extra."""
    from labkit.netlab import sh

    from netagent.parse.netlink import RTM_NEWNEIGH, iter_messages
    from netagent.parse.overlay import neighbour_dump_request
    from netagent.sources.rtnl import Dump, next_seq

    Overlay(lab).up(5)
    lab.add_neighbours(200, dev="vpod0")
    index = int(sh(["ip", "netns", "exec", lab.node, "cat",
                    "/sys/class/net/flannel.1/ifindex"]).stdout)
    sock = netns.netlink_socket(netns.Namespace(lab.node, f"/run/netns/{lab.node}", 0))
    try:
        counts = []
        for ifindex in (0, index):
            raw = b"".join(Dump(sock, neighbour_dump_request("ipv4", ifindex=ifindex,
                                                              seq=next_seq()),
                                what="neighbours").chunks())
            counts.append(sum(1 for m in iter_messages(raw) if m[0] == RTM_NEWNEIGH))
    finally:
        sock.close()
    assert counts[0] >= 205 and counts[1] == 5, counts
