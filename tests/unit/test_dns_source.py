"""The dns source's probing logic with an injected clock and socket factory.

The fake network below answers real DNS wire messages (built with dnspython) after a
configurable round trip, drops chosen queries, or refuses like a closed port; the fake clock
advances only when a socket waits, so these tests take no real time. Real-server behaviour
is covered by tests/kernel/test_dns_lab.py.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from netagent.config import DnsConfig, DnsProbeCounts
from netagent.sources.dns import DnsSource


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeNet:
    """One resolver per address: ``rtt`` seconds away, or absent (connection refused)."""

    clock: Clock
    rtt: float = 0.002
    servers: Sequence[str] = ("10.96.0.10",)
    rcode: int = dns.rcode.NOERROR
    drop: Callable[[int, dns.message.Message], bool] = lambda n, q: False
    send_cost: float = 0.0  # seconds each send takes: real sends are not free
    sent: list[tuple[str, str, str]] = field(default_factory=list)  # (addr, proto, type)
    sockets: list[FakeSocket] = field(default_factory=list)

    def socket(self, family: int, kind: int) -> FakeSocket:
        sock = FakeSocket(self, kind)
        self.sockets.append(sock)
        return sock

    def answer(self, addr: str, wire: bytes, proto: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        self.sent.append((addr, proto, dns.rdatatype.to_text(query.question[0].rdtype)))
        if proto == "udp" and self.drop(len(self.sent) - 1, query):
            return None
        reply = dns.message.make_response(query)
        reply.set_rcode(self.rcode)
        return reply.to_wire()


class FakeSocket:
    def __init__(self, net: FakeNet, kind: int) -> None:
        self.net, self.kind = net, kind
        self.peer: str | None = None
        self.timeout: float | None = None
        self.inbox: list[tuple[float, bytes]] = []
        self.stream = b""
        self.closed = False

    def settimeout(self, value: float | None) -> None:
        self.timeout = value

    def connect(self, sockaddr: tuple[object, ...]) -> None:
        self.peer = str(sockaddr[0])
        if self.kind == socket.SOCK_STREAM and self.peer not in self.net.servers:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    def bind(self, sockaddr: tuple[object, ...]) -> None:
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")

    def send(self, data: bytes) -> int:
        assert self.peer is not None
        self.net.clock.now += self.net.send_cost
        if self.peer not in self.net.servers:  # ICMP port unreachable arrives at once
            self.inbox.append((self.net.clock.now, b""))
            return len(data)
        reply = self.net.answer(self.peer, data, "udp")
        if reply is not None:
            self.inbox.append((self.net.clock.now + self.net.rtt, reply))
        return len(data)

    def sendall(self, data: bytes) -> None:
        assert self.peer is not None
        reply = self.net.answer(self.peer, data[2:], "tcp")
        assert reply is not None
        self.stream += struct.pack("!H", len(reply)) + reply
        self.net.clock.now += self.net.rtt

    def recv(self, size: int) -> bytes:
        if self.kind == socket.SOCK_STREAM:
            chunk, self.stream = self.stream[:size], self.stream[size:]
            return chunk
        assert self.timeout is not None
        due = [m for m in self.inbox if m[0] <= self.net.clock.now + self.timeout]
        if not due:
            self.net.clock.now += self.timeout
            raise TimeoutError("timed out")
        message = min(due)
        self.inbox.remove(message)
        self.net.clock.now = max(self.net.clock.now, message[0])
        if message[1] == b"":
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        return message[1]

    def close(self) -> None:
        self.closed = True


def make_source(tmp_path: Path, net: FakeNet, *, resolv: str = "nameserver 10.96.0.10\n",
                nft: Callable[[Sequence[str]], tuple[int, str, str]] | None = None,
                **settings: object) -> DnsSource:
    (tmp_path / "resolv.conf").write_text(resolv)
    defaults: dict[str, object] = {
        "resolv_conf": str(tmp_path / "resolv.conf"),
        "kubelet_config": str(tmp_path / "absent.yaml"),
        "names": ("example.com.",),
        "probes": DnsProbeCounts(parallel=1, udp=0, tcp=0),
    }
    defaults.update(settings)
    config = DnsConfig(**defaults)  # type: ignore[arg-type]

    def no_nft(argv: Sequence[str]) -> tuple[int, str, str]:
        raise FileNotFoundError(argv[0])

    return DnsSource(config, clock=net.clock, socket_factory=net.socket, run=nft or no_nft)


def test_parallel_sends_a_and_aaaa_from_one_socket(tmp_path: Path) -> None:
    net = FakeNet(Clock())
    obs = make_source(tmp_path, net, nodelocal_address="").collect()
    (r,) = obs.resolvers
    (p,) = r.probes
    assert (p.answered, p.rcode, p.tries, p.timeouts) == (True, "NOERROR", 1, 0)
    assert p.latency == pytest.approx(0.002)
    assert net.sent == [("10.96.0.10", "udp", "A"), ("10.96.0.10", "udp", "AAAA")]
    assert len(net.sockets) == 1 and net.sockets[0].closed


def test_one_lost_packet_costs_a_whole_timeout(tmp_path: Path) -> None:
    net = FakeNet(Clock(), drop=lambda n, q: n == 1)  # the first AAAA is lost
    obs = make_source(tmp_path, net, nodelocal_address="").collect()
    (p,) = obs.resolvers[0].probes
    # resolv.conf defaults: timeout 5 s, attempts 2; the retry is answered
    assert (p.answered, p.tries, p.timeouts) == (True, 2, 1)
    assert p.latency == pytest.approx(5.002)
    assert [t for _, _, t in net.sent] == ["A", "AAAA", "A", "AAAA"]
    assert len(net.sockets) == 1  # same socket, same source port, as glibc


def test_resolv_conf_options_set_timeout_and_attempts(tmp_path: Path) -> None:
    net = FakeNet(Clock(), drop=lambda n, q: True)
    obs = make_source(tmp_path, net, nodelocal_address="",
                      resolv="nameserver 10.96.0.10\noptions timeout:1 attempts:3\n").collect()
    (p,) = obs.resolvers[0].probes
    assert (p.answered, p.tries, p.timeouts, p.failure) == (False, 3, 3, "timeout")
    assert p.latency == pytest.approx(3.0)
    assert (obs.resolvers[0].timeout, obs.resolvers[0].attempts) == (1.0, 3)


def test_udp_and_tcp_modes(tmp_path: Path) -> None:
    net = FakeNet(Clock(), rcode=dns.rcode.NXDOMAIN)
    obs = make_source(tmp_path, net, nodelocal_address="",
                      probes=DnsProbeCounts(parallel=0, udp=1, tcp=1)).collect()
    by_mode = {p.mode: p for p in obs.resolvers[0].probes}
    assert by_mode["udp"].rcode == by_mode["tcp"].rcode == "NXDOMAIN"
    assert by_mode["udp"].answered and by_mode["tcp"].answered
    assert by_mode["udp"].latency == pytest.approx(0.004)  # two sequential round trips
    assert net.sent == [("10.96.0.10", "udp", "A"), ("10.96.0.10", "udp", "AAAA"),
                        ("10.96.0.10", "tcp", "A"), ("10.96.0.10", "tcp", "AAAA")]


def test_connection_refused_ends_the_probe_at_once(tmp_path: Path) -> None:
    net = FakeNet(Clock(), servers=())
    obs = make_source(tmp_path, net, nodelocal_address="",
                      probes=DnsProbeCounts(parallel=1, udp=1, tcp=1)).collect()
    probes = obs.resolvers[0].probes
    assert [p.error for p in probes] == ["connection refused"] * 3
    assert all(not p.answered and p.latency < 0.01 for p in probes)
    assert probes[0].failure == "connection_refused"


def test_refused_rcode(tmp_path: Path) -> None:
    net = FakeNet(Clock(), rcode=dns.rcode.REFUSED)
    (p,) = make_source(tmp_path, net, nodelocal_address="").collect().resolvers[0].probes
    assert (p.answered, p.rcode, p.failure) == (True, "REFUSED", "refused")


def test_budget_bounds_a_round_of_dead_resolvers(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNet(clock, drop=lambda n, q: True)
    source = make_source(tmp_path, net, nodelocal_address="", max_seconds=10.0,
                         probes=DnsProbeCounts(parallel=3, udp=2, tcp=0),
                         resolvers=("10.96.0.10",))
    start = clock.now
    obs = source.collect()
    assert clock.now - start <= 10.0
    (r,) = obs.resolvers
    assert len(r.probes) == 1 and r.skipped == 4
    assert r.probes[0].tries == 2  # 5 + 5 s fitted; nothing more was started


def test_resolvers_from_resolv_conf_kubelet_and_nodelocal(tmp_path: Path, fixtures: Path
                                                         ) -> None:
    net = FakeNet(Clock(), servers=("10.0.0.2", "10.96.0.10", "169.254.20.10"))
    kubelet = fixtures / "dns" / "kubelet-nodelocal.yaml"
    nft_json = (fixtures / "dns" / "nft-notrack.json").read_text()
    source = make_source(
        tmp_path, net, resolv="nameserver 10.0.0.2\nnameserver 169.254.20.10\n",
        kubelet_config=str(kubelet), nft=lambda argv: (0, nft_json, ""))
    obs = source.collect()
    assert [(r.resolver, r.origins) for r in obs.resolvers] == [
        ("10.0.0.2", ("resolv.conf",)),
        ("169.254.20.10", ("resolv.conf", "kubelet", "node-local")),
    ]
    n = obs.nodelocal
    assert n is not None and n.answering and n.answer_detail == "answered NOERROR"
    assert n.kubelet is not None and n.kubelet.cluster_dns == ("169.254.20.10",)
    assert n.notrack is not None and len(n.notrack) == 6
    assert n.assigned is False  # the fake socket refuses every bind


def test_configured_resolvers_replace_discovery(tmp_path: Path) -> None:
    net = FakeNet(Clock(), servers=("10.96.0.10", "169.254.20.10"))
    obs = make_source(tmp_path, net, resolvers=("10.96.0.10",)).collect()
    assert [(r.resolver, r.origins) for r in obs.resolvers] == [("10.96.0.10", ("config",))]
    assert obs.nodelocal is not None and obs.nodelocal.problems["nft"].startswith(
        "nft is not installed")


def test_missing_resolv_conf_and_failing_nft(tmp_path: Path) -> None:
    net = FakeNet(Clock(), servers=())
    source = make_source(tmp_path, net, resolv_conf=str(tmp_path / "nope"),
                         nft=lambda argv: (1, "", "Operation not permitted\n"))
    obs = source.collect()
    assert obs.resolvers == ()
    assert "nope" in obs.problems["resolv.conf"]
    assert obs.nodelocal is not None and obs.nodelocal.answering is False
    assert obs.nodelocal.answer_detail == "connection refused"
    assert obs.nodelocal.problems["nft"] == (
        "nft -j list ruleset failed (1): Operation not permitted")


def test_default_cluster_name_follows_kubelet_cluster_domain(tmp_path: Path) -> None:
    kubelet = tmp_path / "config.yaml"
    kubelet.write_text("kind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\n"
                       "clusterDomain: corp.example\n")
    net = FakeNet(Clock())
    source = make_source(tmp_path, net, nodelocal_address="", kubelet_config=str(kubelet),
                         names=DnsConfig().names)
    probes = source.collect().resolvers[0].probes
    assert [p.name for p in probes] == ["kubernetes.default.svc.corp.example.", "example.com."]


def test_a_name_that_cannot_be_queried_is_an_error_not_a_crash(tmp_path: Path) -> None:
    net = FakeNet(Clock())
    source = make_source(tmp_path, net, names=("a" * 70 + ".example.",))
    (p,) = source.collect().resolvers[0].probes
    assert not p.answered and p.error is not None and p.error.startswith("bad query")
    assert p.failure == "bad_query"  # a bounded label for the failures metric


# --- the round's budget at glibc's defaults ---------------------------------------------------

def test_a_lost_first_packet_gets_its_retry_within_the_default_budget(tmp_path: Path) -> None:
    """timeout 5 s, attempts 2, max_seconds 10: the retry starts at ~5 s with a little less
    than a whole timeout left, and is answered (it used to be skipped: no whole timeout fit,
    and the resolver was reported dead)."""
    from netagent.checks import dns as checks
    from netagent.config import DnsThresholds
    from netagent.model import Observations, Status

    net = FakeNet(Clock(), drop=lambda n, q: n % 4 == 0, send_cost=0.001)
    obs = make_source(tmp_path, net, nodelocal_address="",
                      probes=DnsProbeCounts(parallel=2, udp=0, tcp=0)).collect()
    first, second = obs.resolvers[0].probes
    assert (first.answered, first.tries, first.timeouts, first.cut) == (True, 2, 1, False)
    assert 5.0 <= first.latency <= 5.1
    # the second probe's first packet is lost too; the round ends before its timeout
    assert (second.answered, second.timeouts, second.cut, second.measured) == (
        False, 0, True, False)
    assert second.failure is None
    assert obs.duration <= 10.0
    (result,) = [c for c in checks.evaluate(Observations(current={"dns": obs}),
                                            DnsThresholds()) if c.id == "dns.10.96.0.10"]
    assert result.status is Status.CRITICAL
    assert "5-second pattern" in result.summary and "no answer" not in result.summary
    assert result.evidence["waits_cut_by_budget"] == 1


def test_a_dead_resolver_says_how_many_tries_were_made(tmp_path: Path) -> None:
    from netagent.checks import dns as checks
    from netagent.config import DnsThresholds
    from netagent.model import Observations

    net = FakeNet(Clock(), drop=lambda n, q: True, send_cost=0.001)
    obs = make_source(tmp_path, net, nodelocal_address="").collect()
    (p,) = obs.resolvers[0].probes
    assert (p.tries, p.timeouts, p.cut) == (2, 1, True)
    (result,) = [c for c in checks.evaluate(Observations(current={"dns": obs}),
                                            DnsThresholds()) if c.id == "dns.10.96.0.10"]
    assert "2 tries made: 1 waited out the 5 s timeout, 1 cut short by the round's 10 s " \
           "budget" in result.summary


def test_a_link_local_nameserver_without_a_zone_is_named_as_such(tmp_path: Path) -> None:
    import socket as real_socket

    from netagent.checks import dns as checks
    from netagent.config import DnsThresholds
    from netagent.model import Observations

    (tmp_path / "resolv.conf").write_text("nameserver fe80::53\n")
    source = DnsSource(DnsConfig(resolv_conf=str(tmp_path / "resolv.conf"),
                                 kubelet_config="", nodelocal_address="",
                                 names=("example.com.",),
                                 probes=DnsProbeCounts(parallel=1, udp=0, tcp=1)),
                       socket_factory=real_socket.socket)
    obs = source.collect()
    probes = obs.resolvers[0].probes
    assert {p.error for p in probes} == {"link-local address without a zone (EINVAL)"}
    (result,) = [c for c in checks.evaluate(Observations(current={"dns": obs}),
                                            DnsThresholds()) if c.id == "dns.fe80::53"]
    assert "without a zone" in result.summary and "EINVAL" in result.summary
    assert "%eth0" in result.advice
    assert "tries of 5 s each" not in result.summary


def test_an_empty_resolv_conf_means_glibc_default(tmp_path: Path) -> None:
    from netagent.checks import dns as checks
    from netagent.config import DnsThresholds
    from netagent.model import Observations

    net = FakeNet(Clock(), servers=("127.0.0.1",))
    obs = make_source(tmp_path, net, resolv="# nothing here\n", nodelocal_address="").collect()
    (r,) = obs.resolvers
    assert (r.resolver, r.origins) == ("127.0.0.1", ("glibc default",))
    (result,) = [c for c in checks.evaluate(Observations(current={"dns": obs}),
                                            DnsThresholds()) if c.id == "dns.127.0.0.1"]
    assert "names no nameserver" in result.summary and "default" in result.summary
