"""The 5-second DNS pattern, seen by ``netagent run`` and counted in its histogram.

Lab ``agentdns``: unbound in the node namespace on 10.200.0.1; the agent runs in pod 0
(``ip netns exec``, so /etc/netns/POD/resolv.conf is its resolv.conf). An nft rule drops one
UDP packet to port 53 in four, the first of each parallel A/AAAA pair: every parallel probe
then waits out glibc's 5 s timeout, while TCP probes are untouched. Namespaces, rules, files
and processes are removed at the end, also on failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from labkit import dns as labdns
from labkit import workers
from labkit.netlab import Lab
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.daemon import AGENT_ENV, free_port, poll, running

SERVER = "10.200.0.1"


def scrape_in(ns: str, url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    proc = subprocess.run(["ip", "netns", "exec", ns, *workers.command("get", url)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return {}
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(proc.stdout)
            for s in family.samples}


def bucket(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], *, mode: str,
           le: str) -> float:
    protocol = "tcp" if mode == "tcp" else "udp"
    key = frozenset({"resolver": SERVER, "protocol": protocol, "mode": mode, "le": le}.items())
    return samples.get(("netagent_dns_probe_duration_seconds_bucket", key), 0.0)


def test_lost_parallel_queries_land_between_4_5_and_5_5_seconds(tmp_path: Path) -> None:
    lab = Lab("agentdns")
    server = None
    try:
        lab.up(pods=1)
        server = labdns.DnsServer(ns=lab.node, listen=[SERVER]).start()
        pod = lab.pod(0)
        config = tmp_path / "netagent.yaml"
        config.write_text(yaml.safe_dump({
            "agent": {"jitter": 0, "intervals": {"dns": 1}},
            "dns": {"probes": {"parallel": 2, "udp": 0, "tcp": 1}, "names": ["example.com."],
                    "max_seconds": 16, "nodelocal_address": "",
                    "kubelet_config": str(tmp_path / "no-kubelet.yaml")}}))
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        cmd = ["ip", "netns", "exec", pod, sys.executable, "-m", "netagent", "run",
               "--listen", f"127.0.0.1:{port}", "--config", str(config)]
        with labdns.netns_resolv_conf(pod, f"nameserver {SERVER}\n"), \
                labdns.udp53_loss(lab.node, every=4), \
                running(cmd, log=tmp_path / "agent.log", env=AGENT_ENV) as agent:
            samples = poll("two parallel probes of one round counted", lambda: (
                s if bucket(s := scrape_in(pod, url), mode="parallel", le="+Inf") >= 2
                else None), timeout=60, every=1)
            parallel_slow = (bucket(samples, mode="parallel", le="5.5")
                             - bucket(samples, mode="parallel", le="4.5"))
            assert parallel_slow >= 2, agent.output()
            assert bucket(samples, mode="parallel", le="1.0") == 0
            assert bucket(samples, mode="tcp", le="1.0") >= 1  # TCP does not lose
            key = frozenset({"resolver": SERVER, "protocol": "udp", "reason": "timeout"}.items())
            assert samples[("netagent_dns_probe_failures_total", key)] == 0  # answered late
            status = samples[("netagent_check_status",
                              frozenset({"check": f"dns.{SERVER}"}.items()))]
            assert status == 2  # the dns check names the pattern: critical
    finally:
        if server is not None:
            server.stop()
        labdns.forget_resolv_confs(lab.namespaces())
        lab.down()
