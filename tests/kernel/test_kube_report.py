"""``netagent run`` reporting to the in-test API server while a lab namespace fills the IPv4
neighbour table past gc_thresh2 (warning), then empties it (ok).

The table is the initial namespace's global one (thresholds restored afterwards); the agent,
the API server and the lab are removed whatever happens.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labkit.fakeapi import FakeAPI, status
from labkit.netlab import Lab, sysctls

from tests.e2e.daemon import AGENT_ENV, free_port, http_get, poll, running

V4 = "net.ipv4.neigh.default.gc_thresh"
DEFAULTS = {f"{V4}1": "128", f"{V4}2": "512", f"{V4}3": "1024"}
NODE = "lab-node"


@pytest.fixture
def lab() -> Iterator[Lab]:
    the_lab = Lab("kr")
    with sysctls(DEFAULTS):
        try:
            yield the_lab.up(pods=1)
        finally:
            the_lab.down()


def nodes() -> dict[str, Any]:
    return {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "3"},
            "items": [{"metadata": {"name": NODE, "uid": "0d8e5b1c-lab-node"}},
                      {"metadata": {"name": "other", "uid": "11-other"}}]}


def config(tmp_path: Path, server: str) -> Path:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
        f"clusters:\n- name: lab\n  cluster:\n    server: {server}\n"
        "contexts:\n- name: lab\n  context: {cluster: lab}\n")
    path = tmp_path / "netagent.yaml"
    path.write_text(
        "agent:\n  jitter: 0\n  intervals:\n    neighbours: 0.5\n    conntrack: 3600\n"
        "    overlay: 3600\n    cluster: 3600\n    dns: 3600\n"
        "dns:\n  resolvers: [127.0.0.1]\n  nodelocal_address: ''\n"
        "  kubelet_config: /nonexistent/kubelet-config.yaml\n"
        f"cluster:\n  kubeconfig: {kubeconfig}\n  api_timeout_seconds: 1\n"
        f"kubernetes:\n  report: true\n  node_name: {NODE}\n")
    return path


def agent(port: int, cfg: Path) -> list[str]:
    return [sys.executable, "-m", "netagent", "run", "--listen", f"127.0.0.1:{port}",
            "--config", str(cfg), "--log-format", "json"]


def pressure(api: FakeAPI) -> dict[str, object] | None:
    for c in api.nodes[NODE]["status"]["conditions"]:
        if c["type"] == "NeighbourTablePressure":
            return dict(c)
    return None


def test_warning_and_recovery_reach_the_node(lab: Lab, tmp_path: Path) -> None:
    with FakeAPI(nodes()) as api:
        port = free_port()
        with running(agent(port, config(tmp_path, api.url)), log=tmp_path / "agent.log",
                     env=AGENT_ENV) as proc:
            poll("agent ready", lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
                 timeout=30)
            poll("ok reported", lambda: (pressure(api) or {}).get("status") == "False",
                 timeout=15)
            lab.add_neighbours(600, state="reachable")  # above gc_thresh2 512: warning
            poll("warning reported", lambda: (pressure(api) or {}).get("status") == "True",
                 timeout=15)
            warned = pressure(api)
            lab.flush_neighbours()
            poll("ok again", lambda: (pressure(api) or {}).get("status") == "False",
                 timeout=15)
            metrics = http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()
            log = proc.output()
        events = [body for method, body in api.event_writes() if method == "POST"]
    assert warned is not None and warned["reason"] == "NeighbourIPv4Warning"
    assert "above gc_thresh2" in str(warned["message"])
    kinds = [(e["type"], e["reason"]) for e in events]
    assert ("Warning", "NeighbourIPv4Warning") in kinds
    assert kinds.index(("Warning", "NeighbourIPv4Warning")) < kinds.index(
        ("Normal", "NeighbourIPv4OK"))
    assert all(e["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": NODE,
                                       "uid": "0d8e5b1c-lab-node"} for e in events)
    # the kubelet's conditions were never part of a patch
    assert all(c["type"] in ("NeighbourTablePressure", "ConntrackTablePressure",
                             "OverlayPeersMissing", "DNSDegraded")
               for conditions in api.condition_writes() for c in conditions)
    assert '"event": "kube_error"' not in log
    assert "netagent_kubernetes_report_up 1.0" in metrics
    sent = re.search(r'netagent_kubernetes_requests_total\{code="2xx",'
                     r'operation="patch_node_status"\} (\d+)\.0', metrics)
    assert sent and int(sent[1]) >= 3, metrics  # ok, warning, ok again


WRITE_FAILURES = {
    "403": (403, status(403, "Forbidden", 'nodes "lab-node" is forbidden: User "system:'
                        'serviceaccount:netagent:netagent" cannot patch resource '
                        '"nodes/status"')),
    "409": (409, status(409, "Conflict", 'Operation cannot be fulfilled on nodes "lab-node":'
                        " the object has been modified")),
    "422": (422, status(422, "Invalid", 'Node "lab-node" is invalid: status.conditions[0]')),
    "500": (500, status(500, "InternalError", "etcdserver: request timed out")),
}


@pytest.mark.parametrize("mode", [*WRITE_FAILURES, "404", "slow", "dead"])
def test_a_failing_api_server_is_logged_once_and_the_agent_carries_on(
        tmp_path: Path, mode: str) -> None:
    doc = nodes()
    if mode == "404":  # the API server does not know this node
        doc["items"] = [item for item in doc["items"]
                        if item["metadata"]["name"] != NODE]
    with FakeAPI(doc) as api:
        server = api.url
        if mode in WRITE_FAILURES:
            api.fail_writes = WRITE_FAILURES[mode]
        elif mode == "slow":
            api.delay = 3.0  # past api_timeout_seconds
        elif mode == "dead":
            server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        port = free_port()
        with running(agent(port, config(tmp_path, server)), log=tmp_path / "agent.log",
                     env=AGENT_ENV) as proc:
            poll("agent ready", lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
                 timeout=30)
            poll("an attempt", lambda: '"kube_error"' in proc.output(), timeout=20)
            first = http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()
            poll("more collections", lambda: http_get(
                f"http://127.0.0.1:{port}/metrics")[1].decode() != first, timeout=10)
            text = http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()
            log = proc.output()
    assert 'netagent_source_up{source="neighbours"} 1.0' in text
    assert "netagent_kubernetes_report_up 0.0" in text  # the failure shows in Prometheus
    errors = [json.loads(line) for line in log.splitlines()
              if line.startswith("{") and '"kube_error"' in line]
    assert len(errors) == 1, errors
    expected = {"404": "is not known to the API server", "slow": "no answer in 1 s",
                "dead": "connection refused"}.get(mode, f"HTTP {mode}")
    assert expected in errors[0]["msg"], errors
