"""resolv.conf, kubelet configuration and nft ruleset parsers (tests/fixtures/dns)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netagent.errors import ParseError
from netagent.model import ResolvConf
from netagent.parse.kubelet import parse_kubelet_config
from netagent.parse.nftables import parse_notrack_rules
from netagent.parse.resolv import parse_resolv_conf

# --- resolv.conf -------------------------------------------------------------------------


def test_host_resolv_conf(fixtures: Path) -> None:
    conf = parse_resolv_conf((fixtures / "dns" / "host-resolv.conf").read_text())
    assert conf == ResolvConf(nameservers=("10.255.255.53",))
    assert (conf.timeout, conf.attempts, conf.ndots) == (5, 2, 1)  # glibc defaults


def test_kubelet_written_pod_resolv_conf() -> None:
    # the shape kubelet writes for a ClusterFirst pod (Kubernetes docs, "DNS for Services
    # and Pods"), with the options a NodeLocal DNSCache guide adds
    conf = parse_resolv_conf(
        "search default.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 169.254.20.10\n"
        "options ndots:5 single-request-reopen timeout:2 attempts:3\n")
    assert conf.nameservers == ("169.254.20.10",)
    assert conf.search == ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")
    assert (conf.ndots, conf.timeout, conf.attempts) == (5, 2, 3)
    assert conf.single_request_reopen and not conf.single_request and not conf.use_vc


def test_only_three_nameservers_and_ipv6_zone() -> None:
    conf = parse_resolv_conf(
        "nameserver fe80::1%eth0\nnameserver 2001:db8::53\nnameserver 10.0.0.2\n"
        "nameserver 10.0.0.3\n")
    assert conf.nameservers == ("fe80::1%eth0", "2001:db8::53", "10.0.0.2")
    assert any("10.0.0.3" in i and "first 3" in i for i in conf.ignored)


def test_comments_only_at_line_start_and_first_word_of_nameserver() -> None:
    conf = parse_resolv_conf(
        "# a comment\n; another\n   \nnameserver 10.0.0.1 # trailing words ignored\n"
        "nameserver\t10.0.0.2\n")
    assert conf.nameservers == ("10.0.0.1", "10.0.0.2")


def test_keyword_needs_a_blank_and_bad_addresses_are_ignored() -> None:
    conf = parse_resolv_conf("nameserver10.0.0.1\nnameserver not-an-ip\nnameserver 10.0.0.9\n")
    assert conf.nameservers == ("10.0.0.9",)
    assert len(conf.ignored) == 2


def test_options_are_capped_and_later_lines_win() -> None:
    conf = parse_resolv_conf(
        "options timeout:99 attempts:9 ndots:40 use-vc single-request\n"
        "options timeout:1\n")
    assert (conf.timeout, conf.attempts, conf.ndots) == (1, 5, 15)
    assert conf.use_vc and conf.single_request


def test_options_values_go_through_atoi() -> None:
    conf = parse_resolv_conf("options timeout:x attempts:3abc bogus\n")
    assert (conf.timeout, conf.attempts) == (0, 3)
    assert conf.ignored == ("options bogus: unknown to glibc",)


def test_domain_and_search_replace_each_other() -> None:
    assert parse_resolv_conf("search a b\ndomain c\n").search == ("c",)
    assert parse_resolv_conf("domain c\nsearch a b\n").search == ("a", "b")


def test_empty_file() -> None:
    assert parse_resolv_conf("") == ResolvConf()


# --- kubelet configuration ----------------------------------------------------------------


def test_kubeadm_kubelet_config(fixtures: Path) -> None:
    path = fixtures / "dns" / "kubelet-kubeadm.yaml"
    dns = parse_kubelet_config(path.read_text(), path=str(path))
    assert dns.cluster_dns == ("10.96.0.10",)
    assert dns.cluster_domain == "cluster.local"
    assert dns.problem is None


def test_nodelocal_kubelet_config(fixtures: Path) -> None:
    path = fixtures / "dns" / "kubelet-nodelocal.yaml"
    dns = parse_kubelet_config(path.read_text(), path=str(path))
    assert dns.cluster_dns == ("169.254.20.10",)
    assert dns.problem is None


def test_kubelet_json_config() -> None:
    dns = parse_kubelet_config(
        '{"kind": "KubeletConfiguration", "clusterDNS": ["10.100.0.10", "fd00::a"],'
        ' "clusterDomain": "cluster.local"}', path="kubelet-config.json")
    assert dns.cluster_dns == ("10.100.0.10", "fd00::a")


@pytest.mark.parametrize(("text", "words"), [
    ("kind: KubeletConfiguration\n", "no clusterDNS"),
    ("kind: KubeProxyConfiguration\nclusterDNS: [10.0.0.10]\n", "KubeProxyConfiguration"),
    ("clusterDNS: 10.0.0.10\n", "not a list"),
    ("clusterDNS: [kube-dns]\n", "non-addresses: kube-dns"),
    ("clusterDNS: [10.0.0.10\n", "not valid YAML"),
    ("- just\n- a list\n", "no mapping"),
    ("", "no mapping"),
])
def test_invalid_kubelet_configs_say_why(text: str, words: str) -> None:
    dns = parse_kubelet_config(text, path="/var/lib/kubelet/config.yaml")
    assert dns.cluster_dns == ()
    assert dns.problem is not None
    assert words in dns.problem and "/var/lib/kubelet/config.yaml" in dns.problem


# --- nft -j list ruleset ------------------------------------------------------------------


def _rules(fixtures: Path, name: str) -> tuple:  # type: ignore[type-arg]
    return parse_notrack_rules((fixtures / "dns" / name).read_text())


def test_empty_ruleset(fixtures: Path) -> None:
    assert _rules(fixtures, "nft-empty.json") == ()


def test_nft_native_notrack_rules(fixtures: Path) -> None:
    rules = _rules(fixtures, "nft-notrack.json")
    pre = [r for r in rules if r.hook == "prerouting"]
    assert {(r.protocols, r.daddr, r.dport) for r in pre} == {
        (("udp",), ("169.254.20.10/32",), ((53, 53),)),
        (("tcp",), ("169.254.20.10/32",), ((53, 53),)),
    }
    assert all(r.exact and r.family == "ip" and r.table == "raw" for r in rules)
    out = [r for r in rules if r.hook == "output"]
    assert len(out) == 4 and {r.sport for r in out if r.saddr} == {((53, 53),)}


def test_iptables_nft_rules_show_ct_target(fixtures: Path) -> None:
    rules = _rules(fixtures, "nft-iptables-nodelocal.json")
    # node-cache: 2 PREROUTING + 4 OUTPUT NOTRACK rules; the filter ACCEPT rules are not kept
    assert len(rules) == 6
    assert all(not r.exact and r.table == "raw" for r in rules)
    assert {r.chain for r in rules} == {"PREROUTING", "OUTPUT"}
    pre = sorted(r.protocols for r in rules if r.hook == "prerouting")
    assert pre == [("tcp",), ("udp",)]


def test_iptables_rules_without_notrack(fixtures: Path) -> None:
    assert _rules(fixtures, "nft-iptables-notrack-missing.json") == ()


def test_sets_prefixes_ranges_and_negation() -> None:
    text = """{"nftables": [
      {"chain": {"family": "inet", "table": "t", "name": "c", "hook": "prerouting"}},
      {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                   "right": {"prefix": {"addr": "169.254.20.0", "len": 24}}}},
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                   "right": {"set": ["udp", 6]}}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},
                   "right": {"set": [53, {"range": [5353, 5354]}]}}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": "10.0.0.1"}},
        {"notrack": null}]}},
      {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                   "right": 53}}, {"accept": null}]}}
    ]}"""
    (rule,) = parse_notrack_rules(text)
    assert rule.daddr == ("169.254.20.0/24",)
    assert rule.saddr == ()
    assert rule.protocols == ("udp", "tcp")
    assert rule.dport == ((53, 53), (5353, 5354))
    assert rule.hook == "prerouting"


@pytest.mark.parametrize("text", ["not json", "[]", '{"nftables": 3}'])
def test_unreadable_ruleset(text: str) -> None:
    with pytest.raises(ParseError):
        parse_notrack_rules(text)


def test_eks_kubelet_config_is_json(fixtures: Path) -> None:
    # the shape of /etc/kubernetes/kubelet/kubelet-config.json on EKS (Amazon Linux 2), with
    # a tab, which JSON allows and YAML refuses
    path = fixtures / "dns" / "kubelet-eks.json"
    dns = parse_kubelet_config(path.read_text(), path=str(path))
    assert dns.problem is None
    assert dns.cluster_dns == ("10.100.0.10",) and dns.cluster_domain == "cluster.local"


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not valid JSON"),
    ("a: &x [1]\nclusterDNS: *x\n", "aliases"),
    ("clusterDNS: [10.0.0.10]\nclusterDNS: [10.0.0.11]\n", "duplicate key"),
    ("{" * 100_000, "not valid JSON"),
])
def test_hostile_kubelet_configs_are_problems_not_crashes(text: str, problem: str) -> None:
    dns = parse_kubelet_config(text, path="/k.yaml")
    assert dns.problem is not None and problem in dns.problem
