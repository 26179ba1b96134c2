"""``netagent check --only dns`` against a real DNS server (unbound) in a lab.

Lab ``dnst``: unbound runs in the node namespace on 10.200.0.1 (pod 0's gateway),
10.200.1.1 (pod 1's gateway, which refuses pod 1's subnet) and 169.254.20.10 on ``lo``
(a node-local cache address). The client is the real CLI run with ``ip netns exec POD``,
so it reads the lab's /etc/netns/POD/resolv.conf as its /etc/resolv.conf. Packet loss and
NOTRACK rules are real nftables rules in the node namespace. Every namespace, rule, file
and process is removed at the end, also on failure; every run's wall time is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from labkit import dns as labdns
from labkit.netlab import Lab

ROOT = Path(__file__).resolve().parents[2]
LAB = "dnst"
SERVER = "10.200.0.1"
REFUSING = "10.200.1.1"
SERVER6 = "fd00:53::1"
LINK_LOCAL = "fe80::53"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    for program in ("unbound", "nft", "iptables"):
        if not (shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")):
            pytest.skip(f"{program} is not installed (scripts/test installs it)")
    the_lab = Lab(LAB)
    server = None
    try:
        the_lab.up(pods=2)
        labdns.add_address(the_lab.node, labdns.NODELOCAL)
        # IPv6 between pod 0 and the node: a global pair and a link-local server address
        # ("nodad": usable at once, no duplicate address detection to wait for)
        for ns, dev, cidr in ((the_lab.node, "vpod0", f"{LINK_LOCAL}/64"),
                              (the_lab.node, "vpod0", f"{SERVER6}/64"),
                              (the_lab.pod(0), "eth0", "fe80::2/64"),
                              (the_lab.pod(0), "eth0", "fd00:53::2/64")):
            labdns.sh(["ip", "-n", ns, "-6", "addr", "add", cidr, "dev", dev, "nodad"])
        server = labdns.DnsServer(
            ns=the_lab.node,
            listen=[SERVER, REFUSING, labdns.NODELOCAL, SERVER6, f"{LINK_LOCAL}%vpod0"],
            allow=["0.0.0.0/0", "::/0"], refuse=["10.200.1.0/24"]).start()
        yield the_lab
    finally:
        if server is not None:
            server.stop()
        labdns.forget_resolv_confs(the_lab.namespaces())
        the_lab.down()


def check(ns: str, resolv_conf: str, settings: dict[str, Any], tmp_path: Path,
          *, only: tuple[str, ...] = ("dns",), interval: float = 0,
          ) -> tuple[int, dict[str, Any], float]:
    """Run ``netagent check --only dns --json`` in ``ns``; (exit code, report, seconds)."""
    config = tmp_path / "netagent.yaml"
    settings = {"kubelet_config": str(tmp_path / "no-kubelet.yaml"), **settings}
    config.write_text(yaml.safe_dump({"dns": settings}))
    with labdns.netns_resolv_conf(ns, resolv_conf):
        start = time.monotonic()
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "netagent", "check",
             *(f"--only={name}" for name in only), "--json", "--interval", str(interval),
             "--config", str(config)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.monotonic() - start
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout), wall


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def test_healthy_resolver(lab: Lab, tmp_path: Path) -> None:
    # a 3 s timeout: a machine busy with other work must not turn a slow answer into loss
    code, report, wall = check(
        lab.pod(0), f"nameserver {SERVER}\noptions timeout:3\n",
        {"probes": {"parallel": 3, "udp": 2, "tcp": 2}}, tmp_path)
    checks = by_id(report)
    result = checks[f"dns.{SERVER}"]
    assert result["status"] == "ok", result
    evidence = result["evidence"]
    assert evidence["probes"] == 14 and evidence["timeout_ratio"] == 0
    assert set(evidence["by_mode"]) == {"parallel", "udp", "tcp"}
    for mode in evidence["by_mode"].values():
        assert 0 < mode["p95_seconds"] < 0.5
        assert mode["answered"] == mode["probes"]
    assert evidence["rcode_by_name"] == {
        "kubernetes.default.svc.cluster.local.": {"NOERROR": 7},
        "example.com.": {"NOERROR": 7}}
    # pod 0 has no route to 169.254.20.10: no cache is seen from there
    assert checks["dns.nodelocal"]["status"] == "ok"
    assert code == 0
    assert wall < 10


def test_ipv6_resolvers_with_and_without_zone(lab: Lab, tmp_path: Path) -> None:
    code, report, wall = check(
        lab.pod(0), f"nameserver {SERVER6}\nnameserver {LINK_LOCAL}%eth0\noptions timeout:3\n",
        {"probes": {"parallel": 1, "udp": 1, "tcp": 1}}, tmp_path)
    checks = by_id(report)
    for resolver in (SERVER6, f"{LINK_LOCAL}%eth0"):
        result = checks[f"dns.{resolver}"]
        assert result["status"] == "ok", result
        assert result["evidence"]["probes"] == 6
    assert code == 0
    assert wall < 10


def test_half_the_udp_packets_lost(lab: Lab, tmp_path: Path) -> None:
    with labdns.udp53_loss(lab.node, percent=50):
        code, report, wall = check(
            lab.pod(0), f"nameserver {SERVER}\noptions timeout:1 attempts:2\n",
            {"probes": {"parallel": 4, "udp": 4, "tcp": 2}, "names": ["example.com."],
             "max_seconds": 12, "nodelocal_address": ""}, tmp_path)
    result = by_id(report)[f"dns.{SERVER}"]
    evidence = result["evidence"]
    assert result["status"] in ("warning", "critical"), result
    assert code in (1, 2)
    waited = sum(m["waited_out_timeout"] for m in evidence["by_mode"].values())
    assert waited > 0 and evidence["timeout_ratio"] > 0
    assert evidence["by_mode"]["tcp"]["waited_out_timeout"] == 0  # TCP does not lose
    assert "lost" in result["recommendation"]
    assert wall < 12 + 5


def test_five_second_pattern(lab: Lab, tmp_path: Path) -> None:
    """The first A of each glibc-style pair is dropped: every answer takes one 5 s timeout."""
    with labdns.udp53_loss(lab.node, every=4):
        code, report, wall = check(
            lab.pod(0), f"nameserver {SERVER}\n",  # glibc defaults: timeout 5, attempts 2
            {"probes": {"parallel": 2, "udp": 0, "tcp": 0}, "names": ["example.com."],
             "max_seconds": 16, "nodelocal_address": ""}, tmp_path)
    result = by_id(report)[f"dns.{SERVER}"]
    assert result["status"] == "critical", result
    assert "5-second pattern" in result["summary"]
    pattern = result["evidence"]["five_second_pattern"]
    assert pattern["probes"] == 2
    assert all(4.5 <= x <= 5.5 for x in pattern["latencies_seconds"])
    assert code == 2
    assert wall < 16


def test_five_second_pattern_at_default_settings(lab: Lab, tmp_path: Path) -> None:
    """glibc defaults (5 s x 2) and the default 10 s round: the retry after the lost first
    packet is still sent, so the pattern shows, and the resolver is not called dead."""
    with labdns.udp53_loss(lab.node, every=4):
        code, report, wall = check(
            lab.pod(0), f"nameserver {SERVER}\n",
            {"names": ["example.com."], "nodelocal_address": ""}, tmp_path)
    result = by_id(report)[f"dns.{SERVER}"]
    assert result["status"] == "critical", result
    assert "5-second pattern" in result["summary"], result["summary"]
    assert "no answer" not in result["summary"]
    latencies = result["evidence"]["five_second_pattern"]["latencies_seconds"]
    assert latencies and all(4.5 <= x <= 5.5 for x in latencies)
    assert report["sources"][0]["duration_seconds"] <= 10.5
    assert code == 2
    assert wall < 10 + 5


def test_link_local_resolver_without_a_zone(lab: Lab, tmp_path: Path) -> None:
    code, report, wall = check(
        lab.pod(0), f"nameserver {LINK_LOCAL}\noptions timeout:1\n",
        {"probes": {"parallel": 1, "udp": 1, "tcp": 1}, "nodelocal_address": ""}, tmp_path)
    result = by_id(report)[f"dns.{LINK_LOCAL}"]
    assert result["status"] == "critical"
    assert "without a zone" in result["summary"] and "EINVAL" in result["summary"]
    assert code == 2
    assert wall < 10


def test_loss_without_conntrack_races_is_not_blamed_on_conntrack(lab: Lab, tmp_path: Path
                                                                  ) -> None:
    """With the conntrack source in the same round, its insert_failed counter is read: the
    lab's loss is an nft drop rule, so the counter does not grow and the advice says so."""
    with labdns.udp53_loss(lab.node, every=4):
        code, report, wall = check(
            lab.pod(0), f"nameserver {SERVER}\noptions timeout:1\n",
            {"probes": {"parallel": 2, "udp": 0, "tcp": 1}, "names": ["example.com."],
             "nodelocal_address": ""}, tmp_path, only=("conntrack", "dns"), interval=0.5)
    checks = by_id(report)
    assert "conntrack.errors" in checks
    result = checks[f"dns.{SERVER}"]
    assert result["evidence"]["conntrack"] == "conntrack insert_failed grew by 0 this round"
    assert "not the conntrack race" in result["recommendation"]
    assert code == 2
    assert wall < 10


def test_refusing_and_absent_resolvers(lab: Lab, tmp_path: Path) -> None:
    code, report, wall = check(
        lab.pod(1),
        f"nameserver {REFUSING}\nnameserver 127.0.0.1\nnameserver 10.200.1.99\n"
        "options timeout:1\n",
        {"probes": {"parallel": 2, "udp": 1, "tcp": 1}, "max_seconds": 4}, tmp_path)
    checks = by_id(report)
    refused = checks[f"dns.{REFUSING}"]
    assert refused["status"] == "critical" and "REFUSED" in refused["summary"]
    closed = checks["dns.127.0.0.1"]
    assert closed["status"] == "critical"
    assert "nothing listens on port 53" in closed["summary"]
    absent = checks["dns.10.200.1.99"]
    assert absent["status"] == "critical"
    assert report["sources"][0]["ok"] is True
    assert code == 2
    assert wall < 4 + 4


def test_every_resolver_dead_with_glibc_defaults(lab: Lab, tmp_path: Path) -> None:
    """5 s timeout, 2 attempts, default probes and budget (10 s), three dead resolvers: one
    silently dropping UDP and TCP, one unknown on the link, one with no server."""
    with labdns.udp53_loss(lab.node, percent=100, protocols=("udp", "tcp")):
        code, report, wall = check(
            lab.pod(0), f"nameserver {SERVER}\nnameserver 10.200.0.99\nnameserver 127.0.0.1\n",
            {}, tmp_path)
    checks = by_id(report)
    assert {checks[f"dns.{a}"]["status"] for a in (SERVER, "10.200.0.99",
                                                    "127.0.0.1")} == {"critical"}
    silent = checks[f"dns.{SERVER}"]["evidence"]
    assert silent["skipped_for_time_budget"] > 0  # the budget, not the probe plan, ended it
    assert report["sources"][0]["duration_seconds"] <= 10.5
    assert code == 2
    assert wall < 10 + 5


def _kubelet(tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                    f"clusterDNS:\n- {labdns.NODELOCAL}\nclusterDomain: cluster.local\n")
    return str(path)


@pytest.mark.parametrize("rules", ["nft", "iptables"])
def test_nodelocal_cache_with_notrack_rules(lab: Lab, tmp_path: Path, rules: str) -> None:
    """Run on the node itself: the cache answers on 169.254.20.10 and NOTRACK is in place."""
    labdns.sh(["ip", "netns", "exec", lab.node, "nft", "flush", "ruleset"])
    try:
        if rules == "nft":
            labdns.nft(lab.node, labdns.notrack_script())
        else:
            labdns.iptables_nodelocal(lab.node)
        code, report, wall = check(
            lab.node, f"nameserver {labdns.NODELOCAL}\noptions timeout:1\n",
            {"kubelet_config": _kubelet(tmp_path),
             "probes": {"parallel": 1, "udp": 1, "tcp": 1}}, tmp_path)
    finally:
        labdns.sh(["ip", "netns", "exec", lab.node, "nft", "flush", "ruleset"])
    checks = by_id(report)
    nodelocal = checks["dns.nodelocal"]
    assert nodelocal["status"] == "ok", nodelocal
    assert nodelocal["evidence"]["kubelet_points_at_cache"] is True
    assert nodelocal["evidence"]["address_on_local_interface"] is True
    assert nodelocal["evidence"]["notrack_rules_for_address"]["udp"]
    resolver = checks[f"dns.{labdns.NODELOCAL}"]
    assert resolver["status"] == "ok"
    assert resolver["evidence"]["from"] == ["resolv.conf", "kubelet", "node-local"]
    assert code == 0
    assert wall < 10


def test_nodelocal_cache_without_notrack_rules(lab: Lab, tmp_path: Path) -> None:
    labdns.sh(["ip", "netns", "exec", lab.node, "nft", "flush", "ruleset"])
    try:
        labdns.iptables_nodelocal(lab.node, notrack=False)
        code, report, wall = check(
            lab.node, f"nameserver {labdns.NODELOCAL}\noptions timeout:1\n",
            {"kubelet_config": _kubelet(tmp_path),
             "probes": {"parallel": 1, "udp": 0, "tcp": 0}}, tmp_path)
    finally:
        labdns.sh(["ip", "netns", "exec", lab.node, "nft", "flush", "ruleset"])
    nodelocal = by_id(report)["dns.nodelocal"]
    assert nodelocal["status"] == "warning", nodelocal
    assert "NOTRACK" in nodelocal["summary"] and "missing" in nodelocal["summary"]
    assert code == 1
    assert wall < 10


def test_kubelet_points_at_a_cache_that_does_not_answer(lab: Lab, tmp_path: Path) -> None:
    """Pod 0 has no route to 169.254.20.10: as on a node whose cache pod is gone."""
    code, report, wall = check(
        lab.pod(0), f"nameserver {SERVER}\noptions timeout:1\n",
        {"kubelet_config": _kubelet(tmp_path),
         "probes": {"parallel": 1, "udp": 0, "tcp": 0}, "max_seconds": 3}, tmp_path)
    checks = by_id(report)
    assert checks["dns.nodelocal"]["status"] == "critical"
    assert "nothing answers" in checks["dns.nodelocal"]["summary"]
    assert checks[f"dns.{labdns.NODELOCAL}"]["status"] == "critical"  # kubelet's resolver
    assert code == 2
    assert wall < 3 + 4


def test_cache_address_left_on_an_interface(lab: Lab, tmp_path: Path) -> None:
    """An address on the node's lo where no DNS server listens: a cache that stopped."""
    stale = "169.254.20.11"
    labdns.add_address(lab.node, stale)
    try:
        code, report, wall = check(
            lab.node, f"nameserver {labdns.NODELOCAL}\noptions timeout:1\n",
            {"nodelocal_address": stale, "probes": {"parallel": 1, "udp": 0, "tcp": 0}},
            tmp_path)
    finally:
        labdns.sh(["ip", "-n", lab.node, "addr", "del", f"{stale}/32", "dev", "lo"])
    nodelocal = by_id(report)["dns.nodelocal"]
    assert nodelocal["status"] == "warning", nodelocal
    assert nodelocal["evidence"]["answer"] == "connection refused"
    assert nodelocal["evidence"]["address_on_local_interface"] is True
    assert code == 1
    assert wall < 10
