"""DNS probe histograms and failure counters, accumulated by the agent over rounds."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import generate_latest

from netagent.agent import Agent
from netagent.config import AgentIntervals, AgentSettings, Config
from netagent.errors import SourceError
from netagent.exporter import dns
from netagent.exporter.server import make_registry
from netagent.model import DnsObservation, DnsProbe, ResolverProbes
from tests.unit.test_exporter import parse, value

RESOLVER = "10.96.0.10"


def probe(latency: float, *, mode: str = "parallel", answered: bool = True,
          error: str | None = None, rcode: str | None = "NOERROR") -> DnsProbe:
    return DnsProbe(resolver=RESOLVER, name="kubernetes.default.svc.cluster.local.", mode=mode,
                    latency=latency, answered=answered, rcode=rcode if answered else None,
                    error=error)


def round_of(*probes: DnsProbe) -> DnsObservation:
    return DnsObservation(resolv_conf_path="/etc/resolv.conf", resolv_conf=None,
                          resolvers=(ResolverProbes(resolver=RESOLVER, origins=("resolv.conf",),
                                                    timeout=5.0, attempts=2, probes=probes),),
                          nodelocal=None, duration=1.0, budget_seconds=10.0)


class Rounds:
    """The dns source, replaying given rounds; ``None`` stands for a failed collection."""

    name = "dns"

    def __init__(self, *rounds: DnsObservation | None) -> None:
        self.rounds = list(rounds)

    def sample(self) -> None:
        return None

    def collect(self) -> DnsObservation:
        obs = self.rounds.pop(0)
        if obs is None:
            raise SourceError("resolv.conf: no nameserver")
        return obs


def scrape(agent: Agent) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples, _ = parse(generate_latest(make_registry(agent.state)))
    return samples


def bucket(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], le: str,
           mode: str = "parallel", protocol: str = "udp") -> float:
    return value(samples, "netagent_dns_probe_duration_seconds_bucket", resolver=RESOLVER,
                 protocol=protocol, mode=mode, le=le)


def agent_with(source: Rounds) -> Agent:
    config = Config(agent=AgentSettings(jitter=0, intervals=AgentIntervals(dns=30)))
    return Agent({"dns": source}, config)


def test_rounds_add_up_and_the_five_second_pattern_lands_in_its_bucket() -> None:
    first = round_of(probe(0.0021), probe(5.004), probe(0.004, mode="tcp"))
    second = round_of(probe(0.005), probe(10.02, answered=False),
                      probe(0.0, answered=False, error="connection refused", mode="udp"))
    agent = agent_with(Rounds(first, second))
    agent.collect_one("dns")
    agent.collect_one("dns")
    s = scrape(agent)
    assert bucket(s, "0.001") == 0
    assert bucket(s, "0.0025") == 1
    assert bucket(s, "0.005") == 2  # exactly on a bound counts in that bucket
    assert bucket(s, "4.5") == 2
    assert bucket(s, "5.5") == 3  # the answer that waited out one resolver timeout
    assert bucket(s, "10.0") == 3
    assert bucket(s, "+Inf") == 4  # the probe that gave up after two timeouts
    labels = {"resolver": RESOLVER, "protocol": "udp", "mode": "parallel"}
    assert value(s, "netagent_dns_probe_duration_seconds_count", **labels) == 4
    assert abs(value(s, "netagent_dns_probe_duration_seconds_sum", **labels)
               - (0.0021 + 5.004 + 0.005 + 10.02)) < 1e-9
    assert bucket(s, "0.005", mode="tcp", protocol="tcp") == 1
    assert bucket(s, "0.001", mode="udp") == 1  # a refused probe is observed too
    failures = {labels["reason"]: v for (name, key), v in s.items()
                if name == "netagent_dns_probe_failures_total"
                for labels in [dict(key)] if labels["protocol"] == "udp"}
    assert failures == {"timeout": 1, "connection_refused": 1}
    # every protocol seen has its timeout counter from the start, 0 until one happens
    assert value(s, "netagent_dns_probe_failures_total", resolver=RESOLVER, protocol="tcp",
                 reason="timeout") == 0


def test_a_failed_round_hides_the_series_and_the_counts_carry_on() -> None:
    agent = agent_with(Rounds(round_of(probe(0.01)), None, round_of(probe(0.02))))
    agent.collect_one("dns")
    agent.collect_one("dns")
    s = scrape(agent)
    assert value(s, "netagent_source_up", source="dns") == 0
    assert not [k for k in s if k[0].startswith("netagent_dns_")]
    agent.collect_one("dns")
    s = scrape(agent)
    assert value(s, "netagent_source_up", source="dns") == 1
    assert bucket(s, "+Inf") == 2  # a counter never goes back


def test_fold_leaves_the_previous_totals_alone() -> None:
    one = dns.fold(None, round_of(probe(0.01)))
    two = dns.fold(one, round_of(probe(0.01)))
    key = (RESOLVER, "udp", "parallel")
    assert one.latencies[key].probes == 1 and two.latencies[key].probes == 2


def test_dns_series_are_in_the_contract_and_pass_promtool() -> None:
    from tests.daemonset.conftest import CONTRACT

    agent = agent_with(Rounds(round_of(probe(0.003), probe(6.0, answered=False),
                                       probe(0.01, mode="tcp", rcode="SERVFAIL"))))
    agent.collect_one("dns")
    text = generate_latest(make_registry(agent.state))
    samples, _ = parse(text)
    names = {name for name, _ in samples if name.startswith("netagent_dns_")}
    assert names == {f"netagent_dns_probe_duration_seconds_{s}" for s in
                     ("bucket", "count", "sum")} | {"netagent_dns_probe_failures_total"}
    for name, labels in samples:
        if name.startswith("netagent_dns_"):
            assert {k for k, _ in labels} == CONTRACT.labels_of(name) - CONTRACT.target_labels
    assert value(samples, "netagent_dns_probe_failures_total", resolver=RESOLVER,
                 protocol="tcp", reason="servfail") == 1
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian package 'prometheus'"
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          timeout=30)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc
