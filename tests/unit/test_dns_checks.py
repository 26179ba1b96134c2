"""The dns checks on hand-built observations: thresholds, the 5-second pattern, conntrack
correlation, refused and dead resolvers, node-local cache and its NOTRACK rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netagent.checks import dns as checks
from netagent.config import DnsThresholds
from netagent.model import (
    DnsObservation,
    DnsProbe,
    KubeletDns,
    NodeLocalDns,
    NotrackChange,
    Observations,
    ResolverProbes,
    Status,
)
from netagent.parse.nftables import parse_notrack_rules

T = DnsThresholds()


def probe(latency: float, *, mode: str = "parallel", answered: bool = True,
          timeouts: int = 0, rcode: str | None = "NOERROR", error: str | None = None,
          name: str = "example.com.") -> DnsProbe:
    return DnsProbe(resolver="10.96.0.10", name=name, mode=mode, latency=latency,
                    answered=answered, rcode=rcode if answered else None,
                    tries=timeouts + 1, timeouts=timeouts, error=error)


def resolver(probes: list[DnsProbe], *, timeout: float = 5.0, skipped: int = 0,
             addr: str = "10.96.0.10") -> ResolverProbes:
    return ResolverProbes(resolver=addr, origins=("resolv.conf",), timeout=timeout,
                          attempts=2, probes=tuple(probes), skipped=skipped)


def observe(*resolvers: ResolverProbes, nodelocal: NodeLocalDns | None = None,
            current: dict[str, object] | None = None,
            baseline: dict[str, object] | None = None) -> Observations:
    obs = DnsObservation(resolv_conf_path="/etc/resolv.conf", resolv_conf=None,
                         resolvers=resolvers, nodelocal=nodelocal, duration=1.0,
                         budget_seconds=10.0)
    return Observations(current={"dns": obs, **(current or {})}, baseline=baseline or {})


def only(obs: Observations, check_id: str) -> checks.CheckResult:
    (result,) = [r for r in checks.evaluate(obs, T) if r.id == check_id]
    return result


def test_healthy_resolver_is_ok() -> None:
    r = resolver([probe(0.002), probe(0.004, mode="udp"), probe(0.01, mode="tcp")])
    result = only(observe(r), "dns.10.96.0.10")
    assert result.status is Status.OK
    assert result.observed == pytest.approx(0.01)
    assert result.advice == ""
    assert result.evidence["by_mode"]["tcp"]["p95_seconds"] == pytest.approx(0.01)


@pytest.mark.parametrize(("latencies", "status"), [
    ([0.1] * 19 + [0.6], Status.OK),  # nearest rank: p95 of 20 is the 19th value
    ([0.1] * 18 + [0.6] * 2, Status.WARNING),
    ([0.1] * 18 + [2.5] * 2, Status.CRITICAL),
])
def test_p95_thresholds(latencies: list[float], status: Status) -> None:
    result = only(observe(resolver([probe(x) for x in latencies])), "dns.10.96.0.10")
    assert result.status is status


def test_timeout_ratio_thresholds() -> None:
    fast = [probe(0.01) for _ in range(19)]
    one_late = resolver([*fast, probe(1.01, timeouts=1)], timeout=1.0)
    result = only(observe(one_late), "dns.10.96.0.10")
    assert result.evidence["timeout_ratio"] == pytest.approx(0.05)
    assert result.status is Status.WARNING  # 5 % waited out a timeout; p95 still fast
    five_late = resolver([*fast[:15], *[probe(0.5, timeouts=1) for _ in range(5)]],
                         timeout=0.45)
    assert only(observe(five_late), "dns.10.96.0.10").status is Status.CRITICAL  # 25 %


def test_five_second_pattern_is_named() -> None:
    r = resolver([probe(0.003), probe(5.004, timeouts=1), probe(5.2, timeouts=1),
                  probe(0.004, mode="tcp")])
    result = only(observe(r), "dns.10.96.0.10")
    assert "5-second pattern" in result.summary
    assert result.evidence["five_second_pattern"]["probes"] == 2
    assert result.status is Status.CRITICAL  # p95 5.2 s
    assert "conntrack was not read" in result.advice
    assert result.evidence["udp_loss_only"] is True


def test_pattern_needs_answers_near_multiples_of_the_timeout() -> None:
    hits = checks.five_second_pattern(
        [probe(5.3, timeouts=1), probe(10.9, timeouts=2), probe(7.5, timeouts=1),
         probe(5.0, answered=False, timeouts=1), probe(4.0)],
        timeout=5.0, tolerance=0.1)
    assert [p.latency for p in hits] == [5.3, 10.9]


def test_a_single_late_answer_is_not_a_pattern() -> None:
    r = resolver([probe(0.003)] * 30 + [probe(5.01, timeouts=1)])
    result = only(observe(r), "dns.10.96.0.10")
    assert "pattern" not in result.summary


@dataclass
class ConntrackStats:  # what a conntrack observation looks like to the dns check
    counters: dict[str, int] = field(default_factory=dict)


def test_insert_failed_growth_points_at_the_conntrack_race() -> None:
    r = resolver([probe(5.01, timeouts=1), probe(5.02, timeouts=1)])
    obs = observe(r, current={"conntrack": ConntrackStats({"insert_failed": 12})},
                  baseline={"conntrack": ConntrackStats({"insert_failed": 4})})
    result = only(obs, "dns.10.96.0.10")
    assert result.evidence["conntrack"] == "conntrack insert_failed grew by 8 this round"
    assert "insertion race" in result.advice
    assert "NodeLocal DNSCache" in result.advice
    assert "single-request-reopen" in result.advice


def test_no_insert_failed_growth_says_not_the_race() -> None:
    r = resolver([probe(5.01, timeouts=1), probe(5.02, timeouts=1)])
    obs = observe(r, current={"conntrack": ConntrackStats({"insert_failed": 4})},
                  baseline={"conntrack": ConntrackStats({"insert_failed": 4})})
    result = only(obs, "dns.10.96.0.10")
    assert "not the conntrack race" in result.advice
    assert "use-vc" in result.advice


def test_conntrack_read_by_duck_typing() -> None:
    class Nested:
        stats = ConntrackStats({"insert_failed": 7})

    growth, note = checks.insert_failed_growth(
        Observations(current={"conntrack": Nested()}, baseline={"conntrack": Nested()}))
    assert (growth, note) == (0, "conntrack insert_failed grew by 0 this round")
    growth, note = checks.insert_failed_growth(
        Observations(current={"conntrack": object()}))
    assert growth is None and "no insert_failed" in note
    growth, note = checks.insert_failed_growth(
        Observations(current={"conntrack": ConntrackStats({"insert_failed": 3})}))
    assert growth is None and "no earlier sample" in note


def test_connection_refused_resolver() -> None:
    r = resolver([probe(0.0004, answered=False, error="connection refused")] * 4,
                 addr="127.0.0.1")
    result = only(observe(r), "dns.127.0.0.1")
    assert result.status is Status.CRITICAL
    assert "nothing listens on port 53" in result.summary
    assert "remove 127.0.0.1 from /etc/resolv.conf" in result.advice


def test_refused_rcode_resolver() -> None:
    r = resolver([probe(0.001, rcode="REFUSED")] * 4)
    result = only(observe(r), "dns.10.96.0.10")
    assert result.status is Status.CRITICAL
    assert "REFUSED" in result.summary and "access" in result.advice


def test_dead_resolver() -> None:
    r = resolver([probe(10.0, answered=False, timeouts=2)], skipped=13)
    result = only(observe(r), "dns.10.96.0.10")
    assert result.status is Status.CRITICAL
    assert "no answer to any of 1 probes" in result.summary
    assert result.evidence["skipped_for_time_budget"] == 13


def test_nxdomain_is_an_answer() -> None:
    r = resolver([probe(0.002, rcode="NXDOMAIN", name="kubernetes.default.svc.cluster.local.")])
    result = only(observe(r), "dns.10.96.0.10")
    assert result.status is Status.OK
    assert result.evidence["rcode_by_name"] == {
        "kubernetes.default.svc.cluster.local.": {"NXDOMAIN": 1}}


def test_resolver_not_probed_for_lack_of_time() -> None:
    result = only(observe(resolver([], skipped=14)), "dns.10.96.0.10")
    assert result.status is Status.UNKNOWN and "time budget" in result.summary


def test_missing_source_and_no_resolvers() -> None:
    (result,) = checks.evaluate(Observations(current={}, errors={"dns": "boom"}), T)
    assert (result.id, result.status) == ("dns.resolvers", Status.UNKNOWN)
    assert "boom" in result.summary
    (result,) = checks.evaluate(observe(), T)
    assert (result.id, result.status) == ("dns.resolvers", Status.UNKNOWN)


# --- node-local cache -------------------------------------------------------------------


def nodelocal(fixtures: Path, ruleset: str | None, *, answering: bool = True,
              kubelet: KubeletDns | None = None, assigned: bool | None = True) -> NodeLocalDns:
    rules = (parse_notrack_rules((fixtures / "dns" / ruleset).read_text())
             if ruleset else None)
    return NodeLocalDns(address="169.254.20.10", answering=answering,
                        answer_detail="answered NOERROR" if answering else "connection refused",
                        assigned=assigned, notrack=rules, kubelet=kubelet,
                        problems={} if ruleset else {"nft": "nft is not installed"})


KUBELET_NODELOCAL = KubeletDns(path="/var/lib/kubelet/config.yaml",
                               cluster_dns=("169.254.20.10",), cluster_domain="cluster.local")


@pytest.mark.parametrize("ruleset", ["nft-notrack.json", "nft-iptables-nodelocal.json"])
def test_cache_with_notrack_rules_is_ok(fixtures: Path, ruleset: str) -> None:
    n = nodelocal(fixtures, ruleset, kubelet=KUBELET_NODELOCAL)
    result = checks.check_nodelocal(n)
    assert result.status is Status.OK
    assert "kubelet clusterDNS points at it" in result.summary
    assert len(result.evidence["notrack_rules_for_address"]["udp"]) == 1


def test_cache_without_notrack_rules_warns(fixtures: Path) -> None:
    result = checks.check_nodelocal(nodelocal(fixtures, "nft-iptables-notrack-missing.json"))
    assert result.status is Status.WARNING
    assert "UDP/TCP port 53 are missing" in result.summary
    (change,) = result.changes
    assert isinstance(change, NotrackChange)
    assert (change.address, change.protocols, change.port) == ("169.254.20.10",
                                                               ("udp", "tcp"), 53)
    assert "Restart the node-local-dns pod" in result.advice


def test_cache_without_nft_is_unknown(fixtures: Path) -> None:
    result = checks.check_nodelocal(nodelocal(fixtures, None))
    assert result.status is Status.UNKNOWN and "nft is not installed" in result.summary


def test_kubelet_points_at_a_silent_cache(fixtures: Path) -> None:
    n = nodelocal(fixtures, "nft-notrack.json", answering=False, kubelet=KUBELET_NODELOCAL)
    result = checks.check_nodelocal(n)
    assert result.status is Status.CRITICAL
    assert "nothing answers" in result.summary


def test_no_cache_at_all_is_ok(fixtures: Path) -> None:
    n = nodelocal(fixtures, "nft-empty.json", answering=False, assigned=False)
    assert checks.check_nodelocal(n).status is Status.OK


def test_cache_elsewhere_is_not_judged_here(fixtures: Path) -> None:
    n = nodelocal(fixtures, "nft-empty.json", assigned=False)
    result = checks.check_nodelocal(n)
    assert result.status is Status.OK and "not judged here" in result.summary


def test_loss_advice_mentions_a_present_cache(fixtures: Path) -> None:
    r = resolver([probe(5.01, timeouts=1), probe(5.02, timeouts=1)])
    obs = observe(r, nodelocal=nodelocal(fixtures, "nft-notrack.json"))
    result = only(obs, "dns.10.96.0.10")
    assert "already answers at 169.254.20.10" in result.advice


def test_no_probe_configured() -> None:
    result = only(observe(resolver([])), "dns.10.96.0.10")
    assert result.status is Status.UNKNOWN and "no probe configured" in result.summary


def test_pattern_at_a_shorter_timeout_is_still_named() -> None:
    r = resolver([probe(1.01, timeouts=1), probe(1.02, timeouts=1)], timeout=1.0)
    result = only(observe(r), "dns.10.96.0.10")
    assert "5-second pattern (at this resolver's 1 s timeout)" in result.summary


def test_conntrack_source_records_are_read() -> None:
    from netagent.model import ConntrackObservation, ConntrackStats, KernelVersion

    def reading(insert_failed: int) -> ConntrackObservation:
        stats = ConntrackStats(source="netlink", entries=None, cpus=2,
                               counters={"insert_failed": insert_failed, "drop": 0})
        return ConntrackObservation(kernel=KernelVersion("6.18.0", 6, 18), count=10,
                                    max=262144, buckets=65536, stats=stats)

    growth, _ = checks.insert_failed_growth(Observations(
        current={"conntrack": reading(25)}, baseline={"conntrack": reading(20)}))
    assert growth == 5


def test_unreachable_resolver() -> None:
    r = resolver([probe(0.0002, answered=False, error="network unreachable")] * 3)
    result = only(observe(r), "dns.10.96.0.10")
    assert result.status is Status.CRITICAL
    assert "network unreachable in 3 of 3 probes" in result.summary
    assert "ip route get 10.96.0.10" in result.advice


def test_address_left_behind_by_a_stopped_cache(fixtures: Path) -> None:
    n = nodelocal(fixtures, "nft-notrack.json", answering=False, assigned=True)
    result = checks.check_nodelocal(n)
    assert result.status is Status.WARNING
    assert "nothing answers DNS there" in result.summary


# --- findings that used to mislead ------------------------------------------------------------

def _cluster(probes: list[DnsProbe], origins: tuple[str, ...]) -> ResolverProbes:
    return ResolverProbes(resolver="10.96.0.10", origins=origins, timeout=5.0, attempts=2,
                          probes=tuple(probes))


CLUSTER_NAME = "kubernetes.default.svc.cluster.local."


def test_nxdomain_for_the_cluster_name_from_a_cluster_resolver_warns() -> None:
    probes = [probe(0.002, rcode="NXDOMAIN", name=CLUSTER_NAME), probe(0.002)]
    result = only(observe(_cluster(probes, ("kubelet",))), "dns.10.96.0.10")
    assert result.status is Status.WARNING
    assert "NXDOMAIN for kubernetes.default.svc.cluster.local." in result.summary
    assert "CoreDNS" in result.advice
    # the node's own upstream resolver rightly knows nothing of the cluster
    plain = only(observe(_cluster(probes, ("resolv.conf",))), "dns.10.96.0.10")
    assert plain.status is Status.OK


def test_nxdomain_seen_through_a_pods_resolv_conf_warns() -> None:
    from netagent.model import ResolvConf

    probes = [probe(0.002, rcode="NXDOMAIN", name=CLUSTER_NAME)]
    obs = DnsObservation(resolv_conf_path="/etc/resolv.conf",
                         resolv_conf=ResolvConf(nameservers=("10.96.0.10",),
                                                search=("default.svc.cluster.local",
                                                        "svc.cluster.local")),
                         resolvers=(_cluster(probes, ("resolv.conf",)),), nodelocal=None,
                         duration=0.1, budget_seconds=10.0)
    (result,) = [r for r in checks.evaluate(Observations(current={"dns": obs}), T)
                 if r.id == "dns.10.96.0.10"]
    assert result.status is Status.WARNING


def test_truncated_answers_are_in_the_summary() -> None:
    truncated = DnsProbe(resolver="10.96.0.10", name="big.example.", mode="udp",
                         latency=0.003, answered=True, rcode="NOERROR", truncated=True)
    result = only(observe(resolver([truncated, probe(0.002)])), "dns.10.96.0.10")
    assert "1 answers came truncated (TC bit)" in result.summary
    assert "over TCP" in result.summary


def test_a_resolver_that_refuses_tcp_is_named_as_such() -> None:
    probes = [probe(0.002), probe(0.002, mode="udp"), probe(0.002),
              probe(0.001, mode="tcp", answered=False, error="connection refused")]
    result = only(observe(resolver(probes)), "dns.10.96.0.10")
    assert result.status is Status.WARNING  # 1 of 4 failed: not critical
    assert "answers over UDP but not over TCP" in result.summary
    assert "TC bit" in result.advice and "use-vc" in result.advice
    assert "check the resolver's logs" not in result.advice


def test_the_failure_ratio_has_thresholds_of_its_own() -> None:
    probes = [probe(0.002) for _ in range(9)] + [probe(0.002, rcode="SERVFAIL")]
    assert only(observe(resolver(probes)), "dns.10.96.0.10").status is Status.WARNING
    lenient = DnsThresholds(failure_ratio_warning=0.2, failure_ratio_critical=0.6)
    (result,) = [r for r in checks.evaluate(observe(resolver(probes)), lenient)
                 if r.id == "dns.10.96.0.10"]
    assert result.status is Status.OK  # timeout_ratio_warning (0.05) no longer decides


def test_a_single_late_answer_is_the_pattern_when_it_is_the_only_answer() -> None:
    late = probe(5.003, timeouts=1)
    assert only(observe(resolver([late])), "dns.10.96.0.10").status is Status.CRITICAL
    assert "5-second pattern" in only(observe(resolver([late])), "dns.10.96.0.10").summary
    # one late answer among quick ones is one lost packet, not the pattern
    mixed = only(observe(resolver([late] + [probe(0.002) for _ in range(30)])),
                 "dns.10.96.0.10")
    assert "5-second pattern" not in mixed.summary
