"""A DNS server, packet loss and NOTRACK rules inside lab namespaces.

``DnsServer`` runs unbound (Debian package ``unbound``) in the foreground inside a namespace
with a generated configuration in a temporary directory. It answers only from local data:

    kubernetes.default.svc.cluster.local.  A 10.96.0.1     AAAA fd00:10:96::1
    example.com.                           A 192.0.2.10    AAAA 2001:db8::10

and NXDOMAIN for every other name (it never recurses, so no packet leaves the lab). Clients
in subnets listed in ``refuse`` get REFUSED for everything, which is how a lab resolver that
refuses is made.

``LossRules`` and ``notrack_rules`` install nftables rules inside a namespace with
``ip netns exec NS nft -f -``: a share of UDP port-53 packets dropped (``numgen random mod
100 < N drop``, or every n-th packet with ``numgen inc``), and the raw-table NOTRACK rules
NodeLocal DNSCache installs for its link-local address. Each table is deleted on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from labkit import workers
from labkit.netlab import sh

UNBOUND = "unbound"
NODELOCAL = "169.254.20.10"
RECORDS = {
    "kubernetes.default.svc.cluster.local.": ("10.96.0.1", "fd00:10:96::1"),
    "example.com.": ("192.0.2.10", "2001:db8::10"),
}
LOSS_TABLE = "nalab_dns_loss"
NOTRACK_TABLE = "raw"  # the table name NodeLocal DNSCache's iptables rules live in


def unbound_config(*, directory: Path, listen: Sequence[str], allow: Sequence[str],
                   refuse: Sequence[str] = (), port: int = 53) -> str:
    """The text of an unbound.conf that serves ``RECORDS`` and nothing else."""
    lines = [
        "server:",
        f'  directory: "{directory}"',
        '  chroot: ""',
        '  username: ""',
        f'  pidfile: "{directory}/unbound.pid"',
        "  do-daemonize: no",
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 0",
        "  num-threads: 1",
        f"  port: {port}",
        "  do-ip4: yes",
        f"  do-ip6: {'yes' if any(':' in a for a in listen) else 'no'}",
        "  do-udp: yes",
        "  do-tcp: yes",
        '  module-config: "iterator"',
        "  so-reuseport: no",
        "  incoming-num-tcp: 32",
        "  interface-automatic: no",
        # Local data only: "." static makes every other name NXDOMAIN without recursion.
        '  local-zone: "." static',
    ]
    lines += [f"  interface: {addr}" for addr in listen]
    lines += ["  access-control: 0.0.0.0/0 refuse", "  access-control: ::/0 refuse"]
    lines += [f"  access-control: {net} allow" for net in allow]
    lines += [f"  access-control: {net} refuse" for net in refuse]
    for name, (a, aaaa) in RECORDS.items():
        lines.append(f'  local-data: "{name} 30 IN A {a}"')
        lines.append(f'  local-data: "{name} 30 IN AAAA {aaaa}"')
    lines += ["remote-control:", "  control-enable: no"]
    return "\n".join(lines) + "\n"


@dataclass
class DnsServer:
    """unbound inside namespace ``ns``, listening on ``listen`` (addresses in that namespace)."""

    ns: str
    listen: Sequence[str]
    allow: Sequence[str] = ("0.0.0.0/0",)
    refuse: Sequence[str] = ()
    process: subprocess.Popen[str] | None = None
    directory: Path | None = None

    def start(self, *, ready_within: float = 10.0, directory: Path | None = None,
              detach: bool = False) -> DnsServer:
        """Start unbound; ``detach`` lets it outlive this process (``scripts/lab dns serve``),
        logging to ``unbound.log`` in ``directory``, stopped later by ``stop_detached``."""
        if shutil.which(UNBOUND) is None and not Path("/usr/sbin/unbound").exists():
            raise RuntimeError("unbound is not installed (Debian package 'unbound')")
        if directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="nalab-unbound-"))
        else:
            directory.mkdir(parents=True, exist_ok=True)
            self.directory = directory
        conf = self.directory / "unbound.conf"
        conf.write_text(unbound_config(directory=self.directory, listen=self.listen,
                                       allow=self.allow, refuse=self.refuse))
        sh(["unbound-checkconf", str(conf)])
        argv = ["ip", "netns", "exec", self.ns, "unbound", "-d", "-c", str(conf)]
        if detach:
            with open(self.directory / "unbound.log", "w") as log:
                self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, text=True,
                                                start_new_session=True)
        else:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, text=True)
        self._wait_ready(ready_within)
        return self

    def _wait_ready(self, within: float) -> None:
        """Poll with ``dig``-like queries from inside the namespace until one is answered."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.process.stderr.read() if self.process.stderr else ""
                if self.directory and (self.directory / "unbound.log").exists():
                    err += (self.directory / "unbound.log").read_text()
                raise RuntimeError(f"unbound exited with {self.process.returncode}: {err}")
            proc = sh(["ip", "netns", "exec", self.ns,
                       *workers.command("dns-ready", self.listen[0])], check=False, timeout=10)
            if proc.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"unbound in {self.ns} did not answer within {within} s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


@contextmanager
def dns_server(ns: str, listen: Sequence[str], *, allow: Sequence[str] = ("0.0.0.0/0",),
               refuse: Sequence[str] = ()) -> Iterator[DnsServer]:
    server = DnsServer(ns=ns, listen=listen, allow=allow, refuse=refuse)
    try:
        yield server.start()
    finally:
        server.stop()


def state_dir(lab: str) -> Path:
    return Path(tempfile.gettempdir()) / f"nalab-dns-{lab}"


def serve_detached(lab: str, ns: str, listen: Sequence[str], *,
                   refuse: Sequence[str] = ()) -> int:
    """Start unbound for ``scripts/lab dns serve``; returns its pid (kept in the state dir)."""
    stop_detached(lab)
    server = DnsServer(ns=ns, listen=listen, refuse=refuse)
    server.start(directory=state_dir(lab), detach=True)
    assert server.process is not None
    (state_dir(lab) / "server.pid").write_text(str(server.process.pid))
    return server.process.pid


def stop_detached(lab: str) -> bool:
    """Stop the unbound ``serve_detached`` started for ``lab`` (by its recorded pid)."""
    directory = state_dir(lab)
    pidfile = directory / "server.pid"
    stopped = False
    if pidfile.exists():
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            stopped = True
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
        except ProcessLookupError:
            pass
    shutil.rmtree(directory, ignore_errors=True)
    return stopped


def nft(ns: str, script: str) -> None:
    sh(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=script)


def loss_script(*, percent: int | None = None, every: int | None = None,
                hook: str = "input", protocols: Sequence[str] = ("udp",)) -> str:
    """nft rules dropping port-53 packets (UDP unless ``protocols`` says more) arriving at
    (``input``) a server.

    ``percent``: that share at random; ``every``: one packet in ``every``, counting from the
    first (deterministic: with ``every=4`` the first of each glibc-style A/AAAA pair sent on
    a first try is lost and the retry is answered, the 5-second pattern).
    """
    if (percent is None) == (every is None):
        raise ValueError("give exactly one of percent and every")
    if percent is not None:
        if not 0 <= percent <= 100:
            raise ValueError("percent must be 0..100")
        # nft refuses "< 100" (the value must be in 0..99): all means all
        action = ("counter drop" if percent == 100
                  else f"numgen random mod 100 < {percent} counter drop")
    else:
        assert every is not None and every >= 1
        action = f"numgen inc mod {every} == 0 counter drop"
    rule = f"meta l4proto {{ {', '.join(protocols)} }} th dport 53 {action}"
    return (f"table inet {LOSS_TABLE} {{\n"
            f"  chain {hook} {{ type filter hook {hook} priority 0; policy accept;\n"
            f"    {rule}\n  }}\n}}\n")


@dataclass
class LossRules:
    ns: str
    percent: int | None = None
    every: int | None = None
    protocols: Sequence[str] = ("udp",)
    installed: bool = field(default=False)

    def install(self) -> LossRules:
        self.remove()
        nft(self.ns, loss_script(percent=self.percent, every=self.every,
                                 protocols=self.protocols))
        self.installed = True
        return self

    def remove(self) -> None:
        sh(["ip", "netns", "exec", self.ns, "nft", "delete", "table", "inet", LOSS_TABLE],
           check=False)
        self.installed = False


@contextmanager
def udp53_loss(ns: str, *, percent: int | None = None, every: int | None = None,
               protocols: Sequence[str] = ("udp",)) -> Iterator[LossRules]:
    rules = LossRules(ns=ns, percent=percent, every=every, protocols=protocols)
    try:
        yield rules.install()
    finally:
        rules.remove()


def notrack_script(address: str = NODELOCAL, *, protocols: Sequence[str] = ("udp", "tcp"),
                   output: bool = True) -> str:
    """The raw-table NOTRACK rules NodeLocal DNSCache keeps for its listen address."""
    pre = [f"    ip daddr {address} {p} dport 53 notrack" for p in protocols]
    out = [f"    ip saddr {address} {p} sport 53 notrack" for p in protocols]
    out += [f"    ip daddr {address} {p} dport 53 notrack" for p in protocols]
    text = (f"table ip {NOTRACK_TABLE} {{\n"
            f"  chain prerouting {{ type filter hook prerouting priority raw;\n"
            + "\n".join(pre) + "\n  }\n")
    if output:
        text += ("  chain output { type filter hook output priority raw;\n"
                 + "\n".join(out) + "\n  }\n")
    return text + "}\n"


@contextmanager
def notrack_rules(ns: str, address: str = NODELOCAL, *,
                  protocols: Sequence[str] = ("udp", "tcp"),
                  output: bool = True) -> Iterator[None]:
    sh(["ip", "netns", "exec", ns, "nft", "delete", "table", "ip", NOTRACK_TABLE], check=False)
    nft(ns, notrack_script(address, protocols=protocols, output=output))
    try:
        yield
    finally:
        sh(["ip", "netns", "exec", ns, "nft", "delete", "table", "ip", NOTRACK_TABLE],
           check=False)


@contextmanager
def netns_resolv_conf(ns: str, text: str) -> Iterator[Path]:
    """``/etc/netns/NS/resolv.conf``: what ``ip netns exec NS`` shows as /etc/resolv.conf."""
    directory = Path("/etc/netns") / ns
    made_dir = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "resolv.conf"
    path.write_text(text)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        if made_dir:
            shutil.rmtree(directory, ignore_errors=True)


def forget_resolv_confs(namespaces: Sequence[str]) -> None:
    """Remove /etc/netns/NS of lab namespaces (written by ``scripts/lab dns resolv``)."""
    for ns in namespaces:
        if ns.startswith("nalab-"):
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


def add_address(ns: str, address: str, *, dev: str = "lo") -> None:
    sh(["ip", "-n", ns, "addr", "add", f"{address}/32", "dev", dev])


def default_route(ns: str, via: str) -> None:
    sh(["ip", "-n", ns, "route", "replace", "default", "via", via])


def nodelocal_iptables_rules(address: str = NODELOCAL, *, port: int = 53,
                             notrack: bool = True) -> list[list[str]]:
    """The iptables rules node-cache (kubernetes/dns cmd/node-cache/app/cache_app.go) keeps
    for one listen address, as ``iptables`` argument lists; ``notrack=False`` leaves out the
    raw-table NOTRACK ones, as on a node where they went missing."""
    rules = []
    for proto in ("tcp", "udp"):
        if notrack:
            rules.append(["-t", "raw", "-I", "PREROUTING", "-p", proto, "-d", address,
                          "--dport", str(port), "-j", "NOTRACK"])
        rules.append(["-t", "filter", "-I", "INPUT", "-p", proto, "-d", address,
                      "--dport", str(port), "-j", "ACCEPT"])
        if notrack:
            rules.append(["-t", "raw", "-I", "OUTPUT", "-p", proto, "-s", address,
                          "--sport", str(port), "-j", "NOTRACK"])
        rules.append(["-t", "filter", "-I", "OUTPUT", "-p", proto, "-s", address,
                      "--sport", str(port), "-j", "ACCEPT"])
        if notrack:
            rules.append(["-t", "raw", "-I", "OUTPUT", "-p", proto, "-d", address,
                          "--dport", str(port), "-j", "NOTRACK"])
    return rules


def iptables_nodelocal(ns: str, address: str = NODELOCAL, *, notrack: bool = True) -> None:
    """Install node-cache's rules inside ``ns`` with iptables (iptables-nft on Debian)."""
    for args in nodelocal_iptables_rules(address, notrack=notrack):
        sh(["ip", "netns", "exec", ns, "iptables", "-w", "5", *args])


def nft_ruleset_json(ns: str) -> str:
    return sh(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"]).stdout
