"""The Kubernetes client comparison behind ``scripts/bench --kube-client``.

Two measures, both with netagent and lightkube installed into one throw-away venv, against
``labkit.fakeapi`` on loopback:

* the agent: ``netagent run`` reporting to the fake API (a neighbour collection every
  second, a condition heartbeat every 10 s), once with its own client and once with the
  reporter's requests sent through lightkube (``labkit.lightkube_client``). Start-up is
  process start to the first condition PATCH the API receives; RSS is the maximum over the
  steady window;
* the client alone: in a fresh interpreter that first imports the agent's modules, read the
  Node, then N rounds of the reporter's writes (a strategic-merge PATCH of the Node's
  status, an Event POST). The interpreter alone and the agent's modules without any
  client are the baselines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from labkit.fakeapi import FakeAPI
from labkit.serve import free_port

ROOT = Path(__file__).resolve().parents[2]
MB = 1 << 20
Row = tuple[str, str, str, bool | None]

# Runs in the measured interpreter: argv = client, url, rounds.
WORKLOAD = r'''
import json, sys, time
t0 = time.monotonic()
client_kind, url, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
if client_kind != "none":
    import netagent.agent, netagent.kubereport.reporter  # the agent's own modules
patch = {"status": {"conditions": [{"type": "NeighbourTablePressure", "status": "True",
         "reason": "NeighbourIPv4Warning", "message": "600 of 1024 entries",
         "lastHeartbeatTime": "2026-12-02T10:00:00Z",
         "lastTransitionTime": "2026-12-02T10:00:00Z"}]}}
def event(k):
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"node-a.{k:x}", "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": "node-a",
                               "uid": "uid-node-a"},
            "reason": "NeighbourIPv4Warning", "message": "600 of 1024 entries",
            "type": "Warning", "source": {"component": "netagent", "host": "node-a"},
            "firstTimestamp": "2026-12-02T10:00:00Z", "lastTimestamp": "2026-12-02T10:00:00Z",
            "count": 1}
first = None
if client_kind == "netagent":
    from netagent.parse.kube import KubeTarget
    from netagent.sources.kubeapi import STRATEGIC_MERGE, KubeClient
    c = KubeClient(KubeTarget(server=url, origin="bench"), timeout=5)
    json.loads(c.request("GET", "/api/v1/nodes/node-a"))
    first = time.monotonic()
    for k in range(rounds):
        c.request("PATCH", "/api/v1/nodes/node-a/status", body=patch,
                  content_type=STRATEGIC_MERGE)
        c.request("POST", "/api/v1/namespaces/default/events", body=event(k))
elif client_kind == "lightkube":
    from lightkube import Client, KubeConfig
    from lightkube.types import PatchType
    from lightkube.resources.core_v1 import Node, Event
    config = KubeConfig.from_dict({"apiVersion": "v1", "kind": "Config",
        "current-context": "b", "clusters": [{"name": "b", "cluster": {"server": url}}],
        "contexts": [{"name": "b", "context": {"cluster": "b", "user": "u"}}],
        "users": [{"name": "u", "user": {}}]})
    c = Client(config=config, timeout=5)
    c.get(Node, "node-a")
    first = time.monotonic()
    for k in range(rounds):
        c.patch(Node.Status, "node-a", patch, patch_type=PatchType.STRATEGIC)
        c.create(Event.from_dict(event(k)), namespace="default")
print(json.dumps({"rss": rss(), "startup": None if first is None else first - t0}))
'''


# Runs ``netagent run``, with the reporter on lightkube when argv[1] says so.
LAUNCHER = """import sys
if sys.argv[1] == "lightkube":
    from labkit.lightkube_client import install
    install()
from netagent.cli import main
main(sys.argv[2:])
"""

AGENT_CONFIG = """agent:
  jitter: 0
  intervals: {{neighbours: 1, conntrack: 3600, overlay: 3600, cluster: 3600, dns: 3600}}
dns: {{resolvers: [127.0.0.1], nodelocal_address: '', kubelet_config: ''}}
cluster: {{kubeconfig: {kubeconfig}, api_timeout_seconds: 5}}
kubernetes: {{report: true, node_name: node-a, heartbeat_seconds: 10}}
"""


def _agent(python: str, kind: str, doc: dict[str, Any], tmp: Path, *,
           window: float) -> dict[str, Any]:
    """``netagent run`` reporting to a fresh fake API: start-up to the first condition
    PATCH, the steady RSS over ``window`` seconds, and the writes the API received."""
    with FakeAPI(doc) as api:
        kubeconfig = tmp / f"kubeconfig-{kind}"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: b\n"
            f"clusters:\n- name: b\n  cluster: {{server: '{api.url}'}}\n"
            "contexts:\n- name: b\n  context: {cluster: b, user: u}\n"
            "users:\n- name: u\n  user: {token: bench}\n")
        config = tmp / f"netagent-{kind}.yaml"
        config.write_text(AGENT_CONFIG.format(kubeconfig=kubeconfig))
        log = tmp / f"agent-{kind}.log"
        start = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [python, "-c", LAUNCHER, kind, "run", "--listen",
                 f"127.0.0.1:{free_port()}", "--config", str(config)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                env={"PYTHONPATH": f"{ROOT}:{ROOT / 'scripts'}", "PATH": "/usr/bin:/bin"})
            try:
                while not api.condition_writes():
                    if proc.poll() is not None or time.monotonic() - start > 60:
                        raise RuntimeError(f"{kind} agent: no condition PATCH: "
                                           f"{log.read_text(errors='replace')[-800:]}")
                    time.sleep(0.005)
                startup = time.monotonic() - start
                steady, rss = time.monotonic(), 0
                while time.monotonic() - steady < window:
                    rss = max(rss, psutil.Process(proc.pid).memory_info().rss)
                    time.sleep(0.5)
                if proc.poll() is not None:
                    raise RuntimeError(f"{kind} agent exited during the window")
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        if "kube_error" in log.read_text(errors="replace"):
            raise RuntimeError(f"{kind} agent: {log.read_text(errors='replace')[-800:]}")
        return {"startup": startup, "rss": rss, "writes": len(api.writes)}


def _measure(python: str, kind: str, url: str, rounds: int, runs: int) -> dict[str, Any]:
    """The best start-up of ``runs`` fresh interpreters and the RSS of the last."""
    best: dict[str, Any] = {}
    for _ in range(runs):
        start = time.monotonic()
        done = subprocess.run([python, "-c", WORKLOAD, kind, url, str(rounds)],
                              capture_output=True, text=True, timeout=300, cwd=ROOT,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{kind}: {done.stderr.strip()[-800:]}")
        got = json.loads(done.stdout)
        got["wall"] = time.monotonic() - start  # process start to exit, interpreter included
        if not best or got["wall"] < best["wall"]:
            best = got
    return best


def _lightkube_python(tmp: str) -> tuple[str, str]:
    """A venv with netagent and lightkube; (its python, lightkube's version)."""
    venv = Path(tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(ROOT), "lightkube"], check=True, timeout=600)
    version = subprocess.run([python, "-c", "import importlib.metadata as m; "
                              "print(m.version('lightkube'))"], capture_output=True,
                             text=True, check=True).stdout.strip()
    return python, version


def bench(*, rounds: int = 200, runs: int = 3, window: float = 60.0) -> list[Row]:
    doc = {"kind": "NodeList", "apiVersion": "v1", "items": [
        {"metadata": {"name": "node-a", "uid": "uid-node-a"}}]}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="netagent-kube-") as tmp:
        lk_python, version = _lightkube_python(tmp)
        agents = {kind: _agent(lk_python, kind, doc, Path(tmp), window=window)
                  for kind in ("netagent", "lightkube")}
        with FakeAPI(doc) as api:
            base = _measure(lk_python, "none", api.url, rounds, runs)
            mods = _measure(lk_python, "modules", api.url, rounds, runs)
            ours = _measure(lk_python, "netagent", api.url, rounds, runs)
            theirs = _measure(lk_python, "lightkube", api.url, rounds, runs)
    names = {"netagent": "hand-written client (sources/kubeapi)",
             "lightkube": f"lightkube {version}"}
    for kind, got in agents.items():
        rows.append((f"netagent run, {names[kind]}: steady RSS, max over {window:.0f} s "
                     f"({got['writes']} writes)", f"{got['rss'] / MB:.1f} MB", "<= 60 MB",
                     got["rss"] <= 60 * MB))
        rows.append((f"netagent run, {names[kind]}: start to the first condition PATCH",
                     f"{got['startup'] * 1000:.0f} ms", "", None))
    rows.append(("client alone: interpreter: RSS", f"{base['rss'] / MB:.1f} MB", "", None))
    rows.append(("client alone: the agent's modules, no client: RSS",
                 f"{mods['rss'] / MB:.1f} MB", "", None))
    for kind, got in (("netagent", ours), ("lightkube", theirs)):
        rows.append((f"client alone, {names[kind]}: RSS after {rounds} PATCH + POST",
                     f"{got['rss'] / MB:.1f} MB", "", None))
        rows.append((f"client alone, {names[kind]}: start-up to the first answer "
                     f"(best of {runs})", f"{got['startup'] * 1000:.0f} ms", "", None))
    return rows
