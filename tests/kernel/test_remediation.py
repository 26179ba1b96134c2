"""Remediation on the real kernel, in the initial namespace where the limits live.

Every test saves and restores the neighbour thresholds it may touch (``sysctls``, even on
failure), writes the persisted file and the journal to temporary directories, never
/etc/sysctl.d, and removes its lab. The ramp fills the global IPv4 table for ~20 s.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labkit import dns as labdns
from labkit.netlab import Lab, sysctls, table_fulls
from labkit.remediation import ramp

from tests.e2e.daemon import AGENT_ENV, ROOT, free_port, http_get, poll, running

V4 = "net.ipv4.neigh.default.gc_thresh"
DEFAULTS = {f"{V4}1": "128", f"{V4}2": "512", f"{V4}3": "1024"}
PROC = Path("/proc/sys/net/ipv4/neigh/default")
RAMP = 5 * 1024 + 300  # past five times the default gc_thresh3


def gc(level: int) -> int:
    return int((PROC / f"gc_thresh{level}").read_text())


@pytest.fixture
def lab() -> Iterator[Lab]:
    the_lab = Lab("rem")
    with sysctls(DEFAULTS):
        try:
            yield the_lab.up(pods=1)
        finally:
            the_lab.down()


def config(tmp_path: Path, **remediation: Any) -> Path:
    lines = [f"    {k}: {json.dumps(v)}" for k, v in {
        "persist_dir": str(tmp_path / "sysctl.d"), "state_dir": str(tmp_path / "state"),
        "sysctl_conf": str(tmp_path / "sysctl.conf"), "cooldown_seconds": 1,
        **remediation}.items()]
    (tmp_path / "sysctl.d").mkdir(exist_ok=True)
    path = tmp_path / "netagent.yaml"
    path.write_text(
        "agent:\n  jitter: 0\n  intervals:\n    neighbours: 0.3\n    conntrack: 3600\n"
        "    overlay: 3600\n    cluster: 3600\n    dns: 3600\n"
        "dns:\n  resolvers: [127.0.0.1]\n  nodelocal_address: ''\n"
        "  kubelet_config: /nonexistent/kubelet-config.yaml\n"
        "remediation:\n" + "\n".join(lines) + "\n")
    return path


def remediate(cfg: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "netagent", "remediate", "--json",
                           "--config", str(cfg), "--interval", "0", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=AGENT_ENV)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def metrics(port: int) -> str:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    return body.decode() if status == 200 else ""


def agent(port: int, cfg: Path) -> list[str]:
    return [sys.executable, "-m", "netagent", "run", "--listen", f"127.0.0.1:{port}",
            "--config", str(cfg), "--log-format", "json", "--remediate"]


def test_a_ramp_past_five_times_gc_thresh3_never_fills_the_table(lab: Lab,
                                                                 tmp_path: Path) -> None:
    cfg = config(tmp_path)
    port = free_port()
    fulls_before = table_fulls()
    seen: list[int] = []
    with running(agent(port, cfg), log=tmp_path / "agent.log", env=AGENT_ENV) as proc:
        poll("agent ready", lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
             timeout=30)
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():  # bounded by the ramp below
                seen.append(gc(3))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            ramp(lab, RAMP)
            time.sleep(1.0)  # the last collection
        finally:
            stop.set()
            watcher.join(timeout=5)
        fulls_during = table_fulls() - fulls_before
        text = metrics(port)
        log = proc.output()
    assert fulls_during == 0, f"the kernel refused {fulls_during} entries\n{log[-3000:]}"
    assert lab.count_neighbours() >= RAMP - 10
    steps = [b for a, b in itertools.pairwise(seen) if b != a]
    assert all(b >= a for a, b in itertools.pairwise(seen)), "never lowered"
    assert len(steps) >= 3 and gc(3) > RAMP, (seen[:1], steps)
    persisted = (tmp_path / "sysctl.d" / "90-netagent.conf").read_text()
    for level in (1, 2, 3):
        assert f"{V4}{level} = {gc(level)}\n" in persisted
    applied = re.findall(r'netagent_remediation_actions_total\{key="' + re.escape(f"{V4}3")
                         + r'",result="applied"\} (\S+)', text)
    assert applied and float(applied[0]) == len(steps)
    assert f'netagent_sysctl_value{{key="{V4}3"}} {float(gc(3))}' in text
    assert '"event": "remediation_applied"' in log


def test_the_administrator_wins(lab: Lab, tmp_path: Path) -> None:
    """A key set in another sysctl.d file is never touched; a key written by hand mid-run is
    left alone from then on, with a log line and managed = 0."""
    (tmp_path / "sysctl.d").mkdir()
    (tmp_path / "sysctl.d" / "50-admin.conf").write_text(f"{V4}1 = 128\n")
    cfg = config(tmp_path)
    port = free_port()
    with running(agent(port, cfg), log=tmp_path / "agent.log", env=AGENT_ENV) as proc:
        poll("agent ready", lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
             timeout=30)
        ramp(lab, 800)  # 78 %: one raise
        poll("raised", lambda: gc(3) > 1024, timeout=15)
        assert gc(1) == 128  # set in 50-admin.conf: never touched
        (PROC / "gc_thresh3").write_text("3000\n")  # the administrator, by hand
        poll("released", lambda: f'netagent_remediation_managed{{key="{V4}3"}} 0.0'
             in metrics(port), timeout=15)
        ramp(lab, 1700)  # past 70 % of 2048 for gc_thresh2, past 3000 * 0.5 for 3
        time.sleep(2)
        text, log = metrics(port), proc.output()
    assert gc(3) == 3000, "netagent wrote gc_thresh3 again"
    assert f'netagent_remediation_managed{{key="{V4}1"}} 0.0' in text
    assert "changed to 3000 after netagent wrote" in log
    journal = json.loads((tmp_path / "state" / "journal.json").read_text())
    assert f"{V4}3" in journal["released"] and f"{V4}3" not in journal["keys"]


def test_a_ceiling_is_never_passed(lab: Lab, tmp_path: Path) -> None:
    cfg = config(tmp_path, ceilings=[f"{V4}3=1536"])
    ramp(lab, 1000)  # 98 % of 1024: 2048 wanted, the ceiling gives 1536
    code, plan = remediate(cfg, "--apply")
    assert code == 0 and (gc(3), gc(2), gc(1)) == (1536, 768, 192), plan
    lab.add_neighbours(300, state="reachable", start=1000)
    lab.touch_neighbours(1300, state="reachable")  # 85 % of 1536, busy
    code, plan = remediate(cfg)
    assert [r["reason"] for r in plan["refusals"] if r["key"] == f"{V4}3"] == [
        "cannot raise further: ceiling 1536 reached"]
    assert gc(3) == 1536


def test_rollback_restores_everything_once(lab: Lab, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    ramp(lab, 800)
    lab.touch_neighbours(800, state="reachable")
    code, plan = remediate(cfg)  # dry-run: the plan, exit 1, nothing written
    assert code == 1 and [a["key"] for a in plan["actions"]] == [f"{V4}3", f"{V4}2", f"{V4}1"]
    assert gc(3) == 1024 and not (tmp_path / "state").exists()
    code, result = remediate(cfg, "--apply")
    assert code == 0 and gc(3) == 2048 and gc(2) == 1024 and gc(1) == 256
    assert (tmp_path / "sysctl.d" / "90-netagent.conf").exists()
    lab.flush_neighbours()
    code, result = remediate(cfg, "--rollback")
    assert code == 0, result
    assert (gc(1), gc(2), gc(3)) == (128, 512, 1024)
    assert not (tmp_path / "sysctl.d" / "90-netagent.conf").exists()
    code, again = remediate(cfg, "--rollback")
    assert code == 0 and again["outcomes"] == []


def test_a_read_only_proc_sys_is_an_outcome_and_monitoring_carries_on(
        lab: Lab, tmp_path: Path) -> None:
    """The agent in a mount namespace whose /proc/sys is bound read-only (as a container
    runtime mounts it): every write fails as "read-only", /metrics shows the failures, and
    the agent keeps collecting."""
    cfg = config(tmp_path)
    port = free_port()
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
           "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys "
           "&& exec \"$@\"", "sh", *agent(port, cfg)]
    with running(cmd, log=tmp_path / "agent.log", env=AGENT_ENV) as proc:
        poll("agent ready", lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
             timeout=30)
        ramp(lab, 800)
        failed = poll("a failed action", lambda: re.search(
            r'netagent_remediation_actions_total\{key="' + re.escape(f"{V4}3")
            + r'",result="failed"\} (\S+)', metrics(port)), timeout=20)
        first = float(failed.group(1))
        time.sleep(1.5)
        text, log = metrics(port), proc.output()
        assert proc.proc.poll() is None, "the agent stopped"
    assert gc(3) == 1024
    assert "read-only" in log
    assert 'netagent_source_up{source="neighbours"} 1.0' in text
    assert first >= 1


def ruleset_without_ours(ns: str) -> list[Any]:
    doc = json.loads(labdns.nft_ruleset_json(ns))["nftables"]
    return [item for item in doc if "metainfo" not in item
            and next(iter(item.values())).get("table") != "netagent"
            and next(iter(item.values())).get("name") != "netagent"]


def test_notrack_for_the_node_local_cache_restored_once_then_removed(tmp_path: Path) -> None:
    """In a lab node: unbound answers on 169.254.20.10 with no NOTRACK rules. Ten rounds of
    `remediate --apply` restore netagent's table once; the cache stops and the next round
    removes it; the administrator's own table is the same before and after."""
    the_lab = Lab("rnt")
    server = None
    try:
        the_lab.up(pods=0)
        ns = the_lab.node
        labdns.add_address(ns, labdns.NODELOCAL)
        labdns.nft(ns, "table inet admin {\n chain input {\n  type filter hook input "
                       "priority 0; tcp dport 22 accept\n }\n}\n")
        before = ruleset_without_ours(ns)
        server = labdns.DnsServer(ns=ns, listen=[labdns.NODELOCAL]).start()
        cfg = tmp_path / "netagent.yaml"
        cfg.write_text(
            f"dns:\n  resolvers: [{labdns.NODELOCAL}]\n  nodelocal_address: {labdns.NODELOCAL}\n"
            "  kubelet_config: /nonexistent/kubelet-config.yaml\n"
            "  probes: {parallel: 1, udp: 0, tcp: 0}\n  max_seconds: 3\n"
            f"remediation:\n  persist_dir: {tmp_path}\n  state_dir: {tmp_path / 'state'}\n"
            f"  sysctl_conf: {tmp_path / 'sysctl.conf'}\n")

        def round_in_ns() -> dict[str, Any]:
            proc = subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "netagent", "remediate",
                 "--json", "--apply", "--interval", "0", "--config", str(cfg)],
                capture_output=True, text=True, timeout=60, cwd=ROOT, env=AGENT_ENV)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            result: dict[str, Any] = json.loads(proc.stdout)
            return result

        rounds = [round_in_ns() for _ in range(10)]
        restores = [o for r in rounds for o in r["outcomes"]
                    if o["key"] == "nftables:netagent"]
        assert [(o["result"], o["target"]) for o in restores] == [("applied", 1)]
        ours = labdns.sh(["ip", "netns", "exec", ns, "nft", "list", "table", "inet",
                          "netagent"]).stdout
        assert ours.count("notrack") == 6
        assert ruleset_without_ours(ns) == before

        server.stop()
        server = None
        removed = round_in_ns()
        assert [(o["key"], o["target"]) for o in removed["outcomes"]
                if o["key"].startswith("nftables")] == [("nftables:netagent", 0)]
        tables = labdns.sh(["ip", "netns", "exec", ns, "nft", "list", "tables"]).stdout
        assert "netagent" not in tables and "admin" in tables
        assert ruleset_without_ours(ns) == before
    finally:
        if server is not None:
            server.stop()
        the_lab.down()
