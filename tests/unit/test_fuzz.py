"""Property-based fuzzing of every parser of outside input (hypothesis).

Each parser may only return its record or raise one of the project's errors
(``ParseError``): never another exception, never a hang. Inputs are random bytes and
text, and mutations of the real captures in tests/fixtures (bytes flipped, cut, repeated),
so the decoders are pushed past their first length check.

Examples per parser: ``NETAGENT_FUZZ_EXAMPLES`` (default 400; about 5,000 in all). The
runs are derandomized, so CI sees the same inputs every time (a fuzz finding is a defect to
fix, not a flake); ``NETAGENT_FUZZ_RANDOM=1`` explores new inputs on a developer's machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netagent.errors import NetagentError, ParseError
from netagent.parse import prometheus
from netagent.parse.conntrack import parse_netlink_stats, parse_proc_stats
from netagent.parse.kube import error_reason, parse_kubeconfig, parse_node_page
from netagent.parse.kubelet import parse_kubelet_config
from netagent.parse.netlink import NeighbourTally, chunk_status, decode_links, tally_neighbours
from netagent.parse.nftables import parse_notrack_rules
from netagent.parse.overlay import (
    decode_device_neighbours,
    decode_fdb,
    decode_link_details,
    decode_routes,
)
from netagent.parse.procstat import parse_percpu_table
from netagent.parse.resolv import parse_resolv_conf

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXAMPLES = int(os.environ.get("NETAGENT_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                derandomize=os.environ.get("NETAGENT_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                database=None)
SECONDS_PER_INPUT = 1.0  # a parser that takes longer on one small input is a defect


def only_ours(parse: Callable[[], Any]) -> None:
    """Run ``parse``: its record or a ``ParseError`` are fine, anything else fails."""
    start = time.monotonic()
    with contextlib.suppress(ParseError):
        parse()
    assert time.monotonic() - start < SECONDS_PER_INPUT


def captures(*names: str) -> list[bytes]:
    return [(FIXTURES / name).read_bytes() for name in names]


NEIGH = captures("netlink/neigh-ipv4.bin", "netlink/neigh-ipv6.bin",
                 "exporter/node-neigh-ipv4.bin")
LINKS = captures("netlink/links.bin", "overlay/links.bin")
OVERLAY = captures("overlay/fdb.bin", "overlay/neigh4.bin", "overlay/neigh6.bin",
                   "overlay/routes.bin", "overlay/routes6.bin")


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A real capture with a few bytes changed, a cut, or a slice repeated."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        kind = draw(st.sampled_from(["flip", "cut", "repeat", "zero"]))
        if not data:
            break
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 64))]
        else:
            data[at:at + 4] = b"\0\0\0\0"
    return bytes(data)


def netlink_input(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=512), mutated(seeds))


# --- netlink ---------------------------------------------------------------------------------

@FUZZ
@given(netlink_input(NEIGH))
def test_neighbour_dump_decoder(data: bytes) -> None:
    tally: NeighbourTally = Counter()
    only_ours(lambda: tally_neighbours(data, tally, recent_ticks=500))
    only_ours(lambda: chunk_status(data))


@FUZZ
@given(netlink_input(LINKS))
def test_link_decoders(data: bytes) -> None:
    only_ours(lambda: decode_links(data))
    only_ours(lambda: decode_link_details(data))


@FUZZ
@given(netlink_input(OVERLAY), st.integers(0, 64))
def test_overlay_decoders(data: bytes, ifindex: int) -> None:
    only_ours(lambda: decode_fdb(data, ifindex=ifindex))
    for family in ("ipv4", "ipv6"):
        only_ours(lambda f=family: decode_device_neighbours(data, ifindex=ifindex, family=f))
        only_ours(lambda f=family: decode_routes(data, ifindex=ifindex, family=f))


# --- /proc/net/stat -----------------------------------------------------------------------

STAT_TEXT = [(FIXTURES / p).read_text() for p in (
    "proc/net/stat/arp_cache", "proc/net/stat/ndisc_cache",
    "conntrack/current/proc/net/stat/nf_conntrack", "conntrack/legacy/proc/net/stat/nf_conntrack")]


@st.composite
def mutated_text(draw: st.DrawFn, seeds: list[str]) -> str:
    text = list(draw(st.sampled_from(seeds)))
    alphabet = st.sampled_from([*"0123456789abcdefxyz \t\n-_", "\0", "\u00e9"])
    for _ in range(draw(st.integers(0, 10))):
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        kind = draw(st.sampled_from(["set", "cut", "insert"]))
        if kind == "set":
            text[at] = draw(alphabet)
        elif kind == "cut":
            del text[at:at + draw(st.integers(1, 40))]
        else:
            text.insert(at, draw(alphabet))
    return "".join(text)


@FUZZ
@given(st.one_of(st.text(max_size=300), mutated_text(STAT_TEXT)))
def test_proc_stat_tables(text: str) -> None:
    only_ours(lambda: parse_percpu_table(text))
    only_ours(lambda: parse_proc_stats(text))


@FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(["cpu", "found", "insert_failed", "drop",
                                                 "early_drop", "invalid", "entries", "x"]),
                                st.one_of(st.integers(-2, 2**70), st.text(max_size=5),
                                          st.none(), st.booleans()), max_size=6),
                max_size=6))
def test_conntrack_netlink_stats(messages: list[dict[str, Any]]) -> None:
    only_ours(lambda: parse_netlink_stats(messages))


# --- resolv.conf, kubelet config, nft JSON ---------------------------------------------------

RESOLV = [(FIXTURES / "dns" / "host-resolv.conf").read_text(),
          "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\n"
          "options ndots:5 timeout:2 attempts:3\n"]


@FUZZ
@given(st.one_of(st.text(max_size=400), mutated_text(RESOLV)))
def test_resolv_conf(text: str) -> None:
    only_ours(lambda: parse_resolv_conf(text))


KUBELET = [(FIXTURES / "dns" / name).read_text() for name in (
    "kubelet-kubeadm.yaml", "kubelet-nodelocal.yaml", "kubelet-eks.json")]


@FUZZ
@given(st.one_of(st.text(max_size=400), mutated_text(KUBELET)))
def test_kubelet_config(text: str) -> None:
    only_ours(lambda: parse_kubelet_config(text, path="/k"))


NFT = [(FIXTURES / "dns" / name).read_text() for name in (
    "nft-notrack.json", "nft-iptables-nodelocal.json", "nft-empty.json")]


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=False), st.text(max_size=12))
    return st.recursive(scalars, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children,
                                                        max_size=4)), max_leaves=30)


@st.composite
def mutated_json(draw: st.DrawFn, seeds: list[str]) -> str:
    """A real document with one value somewhere replaced by a random JSON value."""
    doc = json.loads(draw(st.sampled_from(seeds)))
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        for key, child in items:
            paths.append((node, key))
            walk(child)

    walk(doc)
    for _ in range(draw(st.integers(1, 3))):
        if paths:
            parent, key = draw(st.sampled_from(paths))
            parent[key] = draw(json_values())
    return json.dumps(doc)


@FUZZ
@given(st.one_of(st.text(max_size=200), json_values().map(json.dumps), mutated_json(NFT)))
def test_nft_json(text: str) -> None:
    only_ours(lambda: parse_notrack_rules(text))


# --- Kubernetes JSON and kubeconfig ---------------------------------------------------------

KUBE = [(FIXTURES / "kube" / name).read_text() for name in (
    "metadata-limit1.json", "nodelist-calico.json", "metadata-empty.json", "status-403.json")]


@FUZZ
@given(st.one_of(st.binary(max_size=200), json_values().map(lambda v: json.dumps(v).encode()),
                 mutated_json(KUBE).map(str.encode)), st.integers(100, 599))
def test_kubernetes_answers(body: bytes, code: int) -> None:
    only_ours(lambda: parse_node_page(body))
    only_ours(lambda: error_reason(code, body))


KUBECONFIG = ("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
              "contexts:\n- name: c\n  context: {cluster: k, user: u}\n"
              "clusters:\n- name: k\n  cluster:\n    server: https://10.0.0.1:6443\n"
              "    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n"
              "users:\n- name: u\n  user:\n    token: abc.def\n")


@FUZZ
@given(st.one_of(st.text(max_size=300), mutated_text([KUBECONFIG]),
                 json_values().map(json.dumps)))
def test_kubeconfig(text: str) -> None:
    only_ours(lambda: parse_kubeconfig([("/kubeconfig", text)]))


def test_the_mutations_reach_past_the_first_check() -> None:
    """The mutated captures still decode to something often: the fuzzing is not all noise."""
    ok = tried = 0
    data = NEIGH[0]
    for at in range(0, len(data), max(1, len(data) // 200)):
        changed = bytearray(data)
        changed[at] ^= 0x01
        tally: NeighbourTally = Counter()
        tried += 1
        try:
            tally_neighbours(bytes(changed), tally, recent_ticks=500)
        except NetagentError:
            continue
        ok += bool(tally)
    assert tried >= 100 and ok >= tried // 4  # most one-bit changes still decode


@pytest.mark.parametrize("seed", KUBE)
def test_the_kubernetes_seeds_parse(seed: str) -> None:
    try:
        parse_node_page(seed)
    except NetagentError as err:
        assert "Forbidden" in str(err)


# --- Prometheus HTTP API answers (netagent fleet) --------------------------------------------

PROMETHEUS = [json.dumps(doc) for doc in (
    {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"instance": "node-1", "family": "ipv4"}, "value": [1.7e9, "312"]},
        {"metric": {"instance": "node-2"}, "value": [1.7e9, "NaN"]}]}},
    {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[1.7e9, "300"], [1.7e9 + 60, "301"]]}]}},
    {"status": "error", "errorType": "bad_data", "error": "parse error"})]


@FUZZ
@given(st.one_of(st.binary(max_size=200), json_values().map(lambda v: json.dumps(v).encode()),
                 mutated_json(PROMETHEUS).map(str.encode)))
def test_prometheus_answers(body: bytes) -> None:
    only_ours(lambda: prometheus.vector(body))
    only_ours(lambda: prometheus.matrix(body))
