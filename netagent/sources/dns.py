"""DNS latency probes against the node's resolvers, and node-local DNS cache awareness.

What a person would type to see the same thing: ``cat /etc/resolv.conf``, then per resolver
``dig +tries=2 +timeout=5 @10.96.0.10 kubernetes.default.svc.cluster.local A`` (``+tcp`` for
the TCP mode); ``nft list ruleset | grep notrack`` and ``grep -A2 clusterDNS
/var/lib/kubelet/config.yaml`` for the node-local cache.

Resolvers: the ``nameserver`` lines of the resolv.conf path given (``/etc/resolv.conf``, so
``ip netns exec NS netagent ...`` probes what /etc/netns/NS/resolv.conf names), kubelet's
``clusterDNS`` when its config file exists, and the node-local cache address when something
answers one quick query there; ``dns.resolvers`` in the configuration replaces all three.

Each resolver gets ``dns.probes`` probes per name in three modes (``DnsProbe``):
- ``parallel``: A and AAAA sent back to back from ONE connected UDP socket, waiting for both
  with the resolver timeout and sending both again on the same socket (same source port)
  up to ``attempts`` times, as glibc's send_dg does. One lost packet costs a whole timeout:
  the 5-second pattern of the conntrack insertion race. (After a timeout with one answer
  in hand glibc resends the pair one after the other, RES_SNGLKUP; the probe resends it
  together. The cost being measured, a whole timeout per loss, is the same.)
- ``udp``: A, then AAAA, one at a time (glibc ``options single-request``).
- ``tcp``: A, then AAAA, over one TCP connection (``options use-vc``).
A connected UDP socket reports an ICMP port unreachable as ECONNREFUSED ("connection
refused"): nothing listens there.

Time is bounded: resolvers are probed concurrently (one thread each) and nothing is waited
for past ``dns.max_seconds`` from the start of the round. A probe starts while a little time
is left (``MIN_SLICE``: a healthy resolver answers in milliseconds), and a retry starts
whenever time is left, so at glibc's defaults (5 s x 2 tries, a 10 s round) a probe whose
first packet is lost still gets the retry that shows the 5-second pattern. A wait the
budget ends before its timeout is marked ``cut``: it is never counted as a timeout, so a
cut wait is never mistaken for loss. Probes not started are counted as ``skipped``.
"""

from __future__ import annotations

import errno
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from netagent.config import Config, DnsConfig
from netagent.errors import ParseError
from netagent.loaders import LoadError, read_text
from netagent.model import (
    DNS_MODES,
    DnsObservation,
    DnsProbe,
    KubeletDns,
    NodeLocalDns,
    NotrackRule,
    ResolvConf,
    ResolverProbes,
)
from netagent.parse.kubelet import parse_kubelet_config
from netagent.parse.nftables import parse_notrack_rules
from netagent.parse.resolv import parse_resolv_conf
from netagent.sources import program

PORT = 53
GLIBC_DEFAULT_NAMESERVER = "127.0.0.1"
GLIBC_DEFAULT_ORIGIN = "glibc default"
DEFAULT_NAMES = DnsConfig().names
SocketFactory = Callable[[int, int], socket.socket]
# argv -> (returncode, stdout, stderr); raises FileNotFoundError when the program is missing
CommandRunner = Callable[[Sequence[str]], tuple[int, str, str]]
NFT_LIST = ("nft", "-j", "list", "ruleset")
# rcodes from worst to best: the one a probe reports when its two answers differ
_RCODE_ORDER = ("REFUSED", "SERVFAIL", "NOTIMP", "FORMERR", "NXDOMAIN", "NOERROR")
_ERRNO_LABEL = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "connection reset",
    errno.EADDRNOTAVAIL: "address not available",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def run_command(argv: Sequence[str], *, timeout: float = 5.0) -> tuple[int, str, str]:
    """Run a program; sbin directories are searched too (they are often not on PATH)."""
    program = shutil.which(argv[0]) or shutil.which(argv[0], path="/usr/sbin:/sbin")
    if program is None:
        raise FileNotFoundError(argv[0])
    proc = subprocess.run([program, *argv[1:]], capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class _ProbeFailed(Exception):
    """An OS error that ends a probe (refused, unreachable): no retry helps."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


def _label(err: OSError) -> str:
    if isinstance(err, TimeoutError):
        return "timeout"
    if err.errno in _ERRNO_LABEL:
        return _ERRNO_LABEL[err.errno]
    if err.errno:
        return errno.errorcode.get(err.errno, f"errno {err.errno}")
    return type(err).__name__


MIN_SLICE = 0.25  # seconds: a probe starts only with at least this much of the round left


@dataclass
class _Budget:
    """The round's deadline: what is left of it bounds every wait."""

    deadline: float
    clock: Callable[[], float]

    def can_start(self, timeout: float) -> bool:
        """Room for a new probe: a slice of time, or its whole timeout if shorter."""
        return self.left() >= min(timeout, MIN_SLICE)

    def left(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def wait(self, timeout: float) -> tuple[float, bool]:
        """(seconds to wait, whether the budget cut that below ``timeout``)."""
        left = self.left()
        return (timeout, False) if left >= timeout else (left, True)


class DnsSource:
    """Probes every resolver and looks for a node-local cache; see the module docstring."""

    name = "dns"

    def __init__(
        self,
        config: DnsConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        socket_factory: SocketFactory = socket.socket,
        run: CommandRunner = run_command,
        read_text: Callable[[str], str] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.socket_factory = socket_factory
        self.run = run
        self.read_text = read_text or _read_file

    def sample(self) -> None:
        """Nothing to baseline: every probe is a fresh measurement."""
        return None

    # -- configuration on disk -----------------------------------------------------------
    def resolv_conf(self) -> tuple[ResolvConf | None, str | None]:
        path = self.config.resolv_conf
        try:
            return parse_resolv_conf(self.read_text(path)), None
        except OSError as err:
            return None, f"{path}: {err.strerror or err}"

    def kubelet(self) -> KubeletDns | None:
        """The kubelet's DNS settings; None when there is no kubelet config file."""
        path = self.config.kubelet_config
        if not path:
            return None
        try:
            text = self.read_text(path)
        except FileNotFoundError:
            return None
        except OSError as err:
            return KubeletDns(path=path, problem=f"{path}: {err.strerror or err}")
        return parse_kubelet_config(text, path=path)

    def notrack_rules(self) -> tuple[tuple[NotrackRule, ...] | None, str | None]:
        try:
            code, out, err = self.run((program("nft"), *NFT_LIST[1:]))
        except FileNotFoundError:
            return None, "nft is not installed (Debian/Ubuntu package 'nftables')"
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"nft -j list ruleset: {exc}"
        if code != 0:
            return None, f"nft -j list ruleset failed ({code}): {err.strip()[:300]}"
        try:
            return parse_notrack_rules(out), None
        except ParseError as exc:
            return None, str(exc)

    # -- the round -----------------------------------------------------------------------
    def collect(self) -> DnsObservation:
        start = self.clock()
        budget = _Budget(deadline=start + self.config.max_seconds, clock=self.clock)
        problems: dict[str, str] = {}
        conf, conf_problem = self.resolv_conf()
        if conf_problem:
            problems["resolv.conf"] = conf_problem
        kubelet = self.kubelet()
        nodelocal = self.nodelocal(kubelet) if self.config.nodelocal_address else None
        origins = self.resolvers(conf, kubelet, nodelocal)
        names = self.names(kubelet)
        timeout = float(self.config.timeout_seconds
                        or max(1, conf.timeout if conf else 5))
        attempts = int(self.config.attempts or max(1, conf.attempts if conf else 2))
        if not origins:
            problems["resolvers"] = ("no resolver to probe: "
                                     f"{self.config.resolv_conf} names no nameserver")
        results: list[ResolverProbes] = []
        if origins:
            with ThreadPoolExecutor(max_workers=min(16, len(origins)),
                                    thread_name_prefix="dns-probe") as pool:
                futures = [pool.submit(self.probe_resolver, resolver, tuple(where),
                                       names=names, timeout=timeout, attempts=attempts,
                                       budget=budget)
                           for resolver, where in origins.items()]
                results = [f.result() for f in futures]
        return DnsObservation(
            resolv_conf_path=self.config.resolv_conf,
            resolv_conf=conf,
            resolvers=tuple(results),
            nodelocal=nodelocal,
            duration=round(self.clock() - start, 6),
            budget_seconds=self.config.max_seconds,
            problems=problems,
        )

    def resolvers(self, conf: ResolvConf | None, kubelet: KubeletDns | None,
                  nodelocal: NodeLocalDns | None) -> dict[str, list[str]]:
        """resolver -> where it came from, in probing order, without duplicates."""
        found: dict[str, list[str]] = {}

        def add(addr: str, origin: str) -> None:
            found.setdefault(addr, [])
            if origin not in found[addr]:
                found[addr].append(origin)

        if self.config.resolvers:
            for addr in self.config.resolvers:
                add(addr, "config")
            return found
        for addr in conf.nameservers if conf else ():
            add(addr, "resolv.conf")
        if conf is not None and not conf.nameservers:
            # res_init.c: with no nameserver line glibc asks INADDR_LOOPBACK, as pods would
            add(GLIBC_DEFAULT_NAMESERVER, GLIBC_DEFAULT_ORIGIN)
        for addr in kubelet.cluster_dns if kubelet else ():
            add(addr, "kubelet")
        if nodelocal is not None and nodelocal.answering:
            add(nodelocal.address, "node-local")
        return found

    # -- node-local cache ----------------------------------------------------------------
    def nodelocal(self, kubelet: KubeletDns | None) -> NodeLocalDns:
        address = self.config.nodelocal_address
        problems: dict[str, str] = {}
        answering, detail = self._quick_query(address)
        assigned = self._assigned(address)
        rules, nft_problem = self.notrack_rules()
        if nft_problem:
            problems["nft"] = nft_problem
        return NodeLocalDns(address=address, answering=answering, answer_detail=detail,
                            assigned=assigned, notrack=rules, kubelet=kubelet,
                            problems=problems)

    def _quick_query(self, address: str) -> tuple[bool, str]:
        """One A query with a short timeout: does anything answer DNS there?"""
        timeout = self.config.nodelocal_timeout_seconds
        name = self.config.names[0] if self.config.names else "."
        try:
            family, sockaddr = _sockaddr(address)
            sock = self.socket_factory(family, socket.SOCK_DGRAM)
        except _ProbeFailed as err:
            return False, err.label
        except OSError as err:
            return False, _label(err)
        try:
            sock.connect(sockaddr)
            query = dns.message.make_query(name, "A")
            sock.send(query.to_wire())
            end = self.clock() + timeout
            while (left := end - self.clock()) > 0:
                sock.settimeout(left)
                reply = _parse(sock.recv(65535))
                if reply is not None and query.is_response(reply):
                    return True, f"answered {dns.rcode.to_text(reply.rcode())}"
            return False, f"no answer within {timeout:g} s"
        except OSError as err:
            label = _label(err)
            return False, label if label != "timeout" else f"no answer within {timeout:g} s"
        except dns.exception.DNSException as err:
            return False, f"bad query: {err}"
        finally:
            sock.close()

    def _assigned(self, address: str) -> bool | None:
        """Is ``address`` on a local interface? Binding to it succeeds only then."""
        try:
            family, sockaddr = _sockaddr(address)
            sock = self.socket_factory(family, socket.SOCK_DGRAM)
        except (_ProbeFailed, OSError):
            return None
        try:
            sock.bind((sockaddr[0], 0, *sockaddr[2:]))
            return True
        except OSError as err:
            return False if err.errno == errno.EADDRNOTAVAIL else None
        finally:
            sock.close()

    # -- probing one resolver ------------------------------------------------------------
    def names(self, kubelet: KubeletDns | None) -> tuple[str, ...]:
        """The names to resolve: the default in-cluster name follows kubelet's clusterDomain."""
        names = self.config.names
        domain = kubelet.cluster_domain if kubelet else None
        if names == DEFAULT_NAMES and domain and domain.strip(".") != "cluster.local":
            return (f"kubernetes.default.svc.{domain.strip('.')}.", *names[1:])
        return names

    def probe_resolver(self, resolver: str, origins: tuple[str, ...], *,
                       names: Sequence[str], timeout: float, attempts: int,
                       budget: _Budget) -> ResolverProbes:
        counts = {mode: getattr(self.config.probes, mode) for mode in DNS_MODES}
        # round-robin over modes, so a budget cut short still leaves every mode sampled
        plan = [(mode, name)
                for i in range(max(counts.values(), default=0))
                for mode in DNS_MODES if i < counts[mode]
                for name in names]
        probes: list[DnsProbe] = []
        skipped = 0
        for mode, name in plan:
            if not budget.can_start(timeout):
                skipped += 1
                continue
            probes.append(self.probe(resolver, name, mode, timeout=timeout,
                                     attempts=attempts, budget=budget))
        return ResolverProbes(resolver=resolver, origins=origins, timeout=timeout,
                              attempts=attempts, probes=tuple(probes), skipped=skipped)

    def probe(self, resolver: str, name: str, mode: str, *, timeout: float, attempts: int,
              budget: _Budget) -> DnsProbe:
        start = self.clock()
        state = _ProbeState()
        try:
            family, sockaddr = _sockaddr(resolver)
            if mode == "parallel":
                self._parallel(family, sockaddr, name, timeout, attempts, budget, state)
            elif mode == "udp":
                self._sequential_udp(family, sockaddr, name, timeout, attempts, budget,
                                     state)
            else:
                self._tcp(family, sockaddr, name, timeout, attempts, budget, state)
        except _ProbeFailed as err:
            state.error = err.label
        except OSError as err:
            state.error = _label(err)
        except dns.exception.DNSException as err:  # a name dnspython cannot put in a query
            state.error = f"bad query: {err}"
        answered = state.error is None and state.complete
        return DnsProbe(
            resolver=resolver, name=name, mode=mode,
            latency=round(self.clock() - start, 6),
            answered=answered,
            rcode=_worst(state.rcodes) if state.rcodes else None,
            truncated=state.truncated,
            tries=state.tries, timeouts=state.timeouts, error=state.error, cut=state.cut,
        )

    def _parallel(self, family: int, sockaddr: tuple[object, ...], name: str,
                  timeout: float, attempts: int, budget: _Budget,
                  state: _ProbeState) -> None:
        sock = self.socket_factory(family, socket.SOCK_DGRAM)
        try:
            _connect(sock, sockaddr)
            for attempt in range(attempts):
                if attempt and not budget.left():
                    return
                state.tries += 1
                queries = _queries(name, ("A", "AAAA"))
                replies, cut = self._udp_round(sock, queries, timeout, budget)
                if len(replies) == len(queries):
                    state.take(replies)
                    return
                if cut:
                    state.cut = True
                    return
                state.timeouts += 1
        finally:
            sock.close()

    def _sequential_udp(self, family: int, sockaddr: tuple[object, ...], name: str,
                        timeout: float, attempts: int, budget: _Budget,
                        state: _ProbeState) -> None:
        sock = self.socket_factory(family, socket.SOCK_DGRAM)
        try:
            _connect(sock, sockaddr)
            answers: list[dns.message.Message] = []
            for rdtype in ("A", "AAAA"):
                for attempt in range(attempts):
                    if (attempt or answers) and not budget.left():
                        return
                    state.tries += 1
                    replies, cut = self._udp_round(sock, _queries(name, (rdtype,)), timeout,
                                                   budget)
                    if replies:
                        answers.extend(replies)
                        break
                    if cut:
                        state.cut = True
                        return
                    state.timeouts += 1
                else:
                    return
            state.take(answers)
        finally:
            sock.close()

    def _udp_round(self, sock: socket.socket, queries: list[dns.message.Message],
                   timeout: float, budget: _Budget
                   ) -> tuple[list[dns.message.Message], bool]:
        """Send ``queries`` together and collect the replies that arrive within ``timeout``
        of the last send, or until the round's budget ends, if sooner; (replies, whether the
        budget cut the wait)."""
        for query in queries:
            try:
                sock.send(query.to_wire())
            except OSError as err:
                raise _ProbeFailed(_label(err)) from err
        pending = {q.id: q for q in queries}
        replies: list[dns.message.Message] = []
        wait, cut = budget.wait(timeout)
        end = self.clock() + wait
        while pending and (left := end - self.clock()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except TimeoutError:
                break
            except OSError as err:
                raise _ProbeFailed(_label(err)) from err
            reply = _parse(data)
            if reply is None:
                continue
            waiting = pending.get(reply.id)
            if waiting is not None and waiting.is_response(reply):
                del pending[reply.id]
                replies.append(reply)
        return replies, cut

    def _tcp(self, family: int, sockaddr: tuple[object, ...], name: str, timeout: float,
             attempts: int, budget: _Budget, state: _ProbeState) -> None:
        for attempt in range(attempts):
            if attempt and not budget.left():
                return
            state.tries += 1
            wait, cut = budget.wait(timeout)
            sock = self.socket_factory(family, socket.SOCK_STREAM)
            try:
                end = self.clock() + wait
                sock.settimeout(wait)
                try:
                    sock.connect(sockaddr)
                except TimeoutError:
                    if cut:
                        state.cut = True
                        return
                    state.timeouts += 1
                    continue
                except OSError as err:
                    raise _ProbeFailed(_connect_label(err, sockaddr)) from err
                answers = []
                for query in _queries(name, ("A", "AAAA")):
                    reply = self._tcp_exchange(sock, query, end)
                    if reply is None:
                        break
                    answers.append(reply)
                if len(answers) == 2:
                    state.take(answers)
                    return
                if cut:
                    state.cut = True
                    return
                state.timeouts += 1
            finally:
                sock.close()

    def _tcp_exchange(self, sock: socket.socket, query: dns.message.Message,
                      end: float) -> dns.message.Message | None:
        wire = query.to_wire()
        try:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            header = self._read_exact(sock, 2, end)
            if header is None:
                return None
            body = self._read_exact(sock, struct.unpack("!H", header)[0], end)
        except TimeoutError:
            return None
        except OSError as err:
            raise _ProbeFailed(_label(err)) from err
        reply = _parse(body) if body is not None else None
        return reply if reply is not None and query.is_response(reply) else None

    def _read_exact(self, sock: socket.socket, count: int, end: float) -> bytes | None:
        data = b""
        while len(data) < count:
            left = end - self.clock()
            if left <= 0:
                return None
            sock.settimeout(left)
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise _ProbeFailed("connection closed")
            data += chunk
        return data


@dataclass
class _ProbeState:
    tries: int = 0
    timeouts: int = 0
    error: str | None = None
    cut: bool = False
    complete: bool = False
    truncated: bool = False
    rcodes: tuple[str, ...] = ()

    def take(self, replies: list[dns.message.Message]) -> None:
        self.complete = True
        self.rcodes = tuple(dns.rcode.to_text(r.rcode()) for r in replies)
        self.truncated = any(bool(r.flags & dns.flags.TC) for r in replies)


def _queries(name: str, rdtypes: Sequence[str]) -> list[dns.message.Message]:
    queries: list[dns.message.Message] = []
    for rdtype in rdtypes:
        query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
        while any(q.id == query.id for q in queries):  # the two ids of a pair must differ
            query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
        queries.append(query)
    return queries


def _parse(data: bytes) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(data, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError):
        return None


def _worst(rcodes: Sequence[str]) -> str:
    return min(rcodes, key=lambda r: _RCODE_ORDER.index(r) if r in _RCODE_ORDER else 0)


def _sockaddr(address: str) -> tuple[int, tuple[object, ...]]:
    """Family and socket address of a numeric IPv4/IPv6 address (``fe80::1%eth0`` too)."""
    try:
        info = socket.getaddrinfo(address, PORT, type=socket.SOCK_DGRAM,
                                  flags=socket.AI_NUMERICHOST)
    except socket.gaierror as err:
        raise _ProbeFailed(f"bad address {address!r}") from err
    family, _, _, _, sockaddr = info[0]
    return int(family), tuple(sockaddr)


def _connect(sock: socket.socket, sockaddr: tuple[object, ...]) -> None:
    try:
        sock.connect(sockaddr)
    except OSError as err:
        raise _ProbeFailed(_connect_label(err, sockaddr)) from err


def _connect_label(err: OSError, sockaddr: tuple[object, ...]) -> str:
    """The kernel answers EINVAL to a link-local IPv6 address without a zone: say so."""
    if (err.errno == errno.EINVAL and len(sockaddr) == 4 and not sockaddr[3]
            and str(sockaddr[0]).lower().startswith("fe80")):
        return "link-local address without a zone (EINVAL)"
    return _label(err)


def _read_file(path: str) -> str:
    """A bounded regular file; ``FileNotFoundError`` as is, other failures as ``OSError``."""
    try:
        return read_text(path, what="file", errors="replace")
    except LoadError as err:
        raise OSError(str(err).removeprefix(f"{path}: ")) from err


def from_config(config: Config, wanted: Sequence[str]) -> DnsSource:
    return DnsSource(config.dns)
