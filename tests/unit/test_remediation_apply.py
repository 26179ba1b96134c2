"""The executor carrying out plans on a sysctl tree in a temporary directory: the journal,
the persisted file, rollback, and failures as outcomes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from netagent.config import RemediationConfig
from netagent.model import Journal
from netagent.parse.journal import parse_journal
from netagent.remediation import executor
from netagent.remediation.plan import Action, Elsewhere, NotrackAction, Plan
from netagent.sources import sysctl

V4 = "net.ipv4.neigh.default.gc_thresh"


def tree(tmp_path: Path) -> RemediationConfig:
    r = RemediationConfig(sysctl_root=str(tmp_path / "proc/sys"),
                          module_root=str(tmp_path / "sys/module"),
                          persist_dir=str(tmp_path / "sysctl.d"),
                          state_dir=str(tmp_path / "state"),
                          sysctl_conf=str(tmp_path / "sysctl.conf"))
    for key, value in ((f"{V4}1", 128), (f"{V4}2", 512), (f"{V4}3", 1024)):
        path = sysctl.key_path(r, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    Path(r.persist_dir).mkdir()
    return r


def raise_plan() -> Plan:
    return Plan(actions=(Action(f"{V4}3", 1024, 2048, "test"), Action(f"{V4}2", 512, 1024,
                                                                       "test")))


def value(r: RemediationConfig, key: str) -> int | None:
    return sysctl.read_value(sysctl.key_path(r, key))


def test_apply_persists_journals_and_rolls_back(tmp_path: Path) -> None:
    r = tree(tmp_path)
    outcomes, journal = executor.apply(raise_plan(), Journal(), r, now=100.0, version="t")
    assert [o.result for o in outcomes] == ["applied", "applied"]
    assert (value(r, f"{V4}3"), value(r, f"{V4}2")) == (2048, 1024)
    persisted = Path(r.persist_dir, "90-netagent.conf").read_text()
    assert persisted.startswith("# Written by netagent t (remediation)")
    assert f"{V4}3 = 2048\n" in persisted and f"{V4}2 = 1024\n" in persisted
    on_disk = parse_journal(Path(r.state_dir, "journal.json").read_text())
    assert on_disk == journal
    assert on_disk.keys[f"{V4}3"].original == 1024 and on_disk.keys[f"{V4}3"].written == 2048
    # a second raise keeps the first original
    _, journal = executor.apply(Plan(actions=(Action(f"{V4}3", 2048, 4096, "again"),)),
                                journal, r, now=500.0, version="t")
    assert journal.keys[f"{V4}3"].original == 1024

    outcomes, left = executor.rollback(journal, r, now=900.0, version="t")
    assert (value(r, f"{V4}3"), value(r, f"{V4}2")) == (1024, 512)
    assert not Path(r.persist_dir, "90-netagent.conf").exists()
    assert left.keys == {} and all(o.result == "applied" for o in outcomes)
    again, _ = executor.rollback(parse_journal(Path(r.state_dir, "journal.json").read_text()),
                                 r, now=901.0, version="t")
    assert again == []  # nothing left to do


def test_rollback_leaves_a_value_the_administrator_changed(tmp_path: Path) -> None:
    r = tree(tmp_path)
    _, journal = executor.apply(raise_plan(), Journal(), r, now=100.0, version="t")
    sysctl.key_path(r, f"{V4}3").write_text("8192\n")  # the administrator
    outcomes, _ = executor.rollback(journal, r, now=200.0, version="t")
    assert value(r, f"{V4}3") == 8192 and value(r, f"{V4}2") == 512
    (skipped,) = [o for o in outcomes if o.key == f"{V4}3"]
    assert skipped.result == "skipped" and "left alone: 8192" in skipped.reason


def test_a_released_key_leaves_the_journal(tmp_path: Path) -> None:
    r = tree(tmp_path)
    _, journal = executor.apply(raise_plan(), Journal(), r, now=100.0, version="t")
    plan = Plan(elsewhere=(Elsewhere(f"{V4}3", "changed to 8192 after netagent wrote 2048",
                                     True),))
    _, journal = executor.apply(plan, journal, r, now=200.0, version="t")
    assert f"{V4}3" not in journal.keys and f"{V4}3" in journal.released
    assert f"{V4}3 =" not in Path(r.persist_dir, "90-netagent.conf").read_text()


def test_failures_are_outcomes(tmp_path: Path) -> None:
    r = tree(tmp_path)
    plan = Plan(actions=(Action("net.ipv4.neigh.default.gc_thresh9", 1, 2, "test"),))
    outcomes, journal = executor.apply(plan, Journal(), r, now=1.0, version="t")
    assert outcomes[0].result == "failed" and "no such key" in outcomes[0].reason
    assert journal.keys == {} and journal.actions[0].result == "failed"
    # a state directory that cannot be made
    blocked = RemediationConfig(sysctl_root=r.sysctl_root, persist_dir=r.persist_dir,
                                state_dir=str(tmp_path / "sysctl.d" / "90-netagent.conf"
                                              / "x"))
    Path(r.persist_dir, "90-netagent.conf").write_text("")
    outcomes, _ = executor.apply(raise_plan(), Journal(), blocked, now=1.0, version="t")
    assert outcomes[-1].result == "failed" and "journal.json" in outcomes[-1].key


def test_notrack_goes_through_nft_in_one_transaction(tmp_path: Path) -> None:
    r = tree(tmp_path)
    calls: list[str] = []

    def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        assert args[0].endswith("nft") and args[1:] == ["-f", "-"]
        calls.append(kw["input"])
        return subprocess.CompletedProcess(args, 0, "", "")

    add = Plan(notrack=(NotrackAction("169.254.20.10", True, "missing"),))
    outcomes, journal = executor.apply(add, Journal(), r, now=1.0, version="t", run=run)
    assert outcomes[0].ok and journal.notrack == "169.254.20.10"
    script = calls[0]
    assert script.startswith("table inet netagent\ndelete table inet netagent\n")
    assert script.count("notrack") == 6 and "accept" not in script
    _, left = executor.rollback(journal, r, now=2.0, version="t", run=run)
    assert left.notrack is None and calls[-1].endswith("delete table inet netagent\n")

    def refuse(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 1, "", "Error: Could not process rule")

    outcomes, journal = executor.apply(add, Journal(), r, now=3.0, version="t", run=refuse)
    assert outcomes[0].result == "failed" and "Could not process rule" in outcomes[0].reason
    assert journal.notrack is None


def test_the_remediation_families() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from netagent.exporter.collector import StatusCollector
    from netagent.exporter.remediation import families
    from netagent.state import RemediationStatus

    status = RemediationStatus(
        mode="apply", actions={(f"{V4}3", "applied"): 3, (f"{V4}3", "failed"): 1},
        managed={f"{V4}3": False, f"{V4}2": True}, values={f"{V4}3": 4096, f"{V4}2": None},
        at_ceiling=frozenset({"net.netfilter.nf_conntrack_max"}))
    registry = CollectorRegistry()
    registry.register(StatusCollector(families, lambda: status))
    text = generate_latest(registry).decode()
    assert "netagent_remediation_mode 2.0" in text
    assert f'netagent_remediation_actions_total{{key="{V4}3",result="applied"}} 3.0' in text
    assert f'netagent_remediation_managed{{key="{V4}3"}} 0.0' in text
    assert f'netagent_remediation_managed{{key="{V4}2"}} 1.0' in text
    assert f'netagent_sysctl_value{{key="{V4}3"}} 4096.0' in text
    assert f'netagent_sysctl_value{{key="{V4}2"}}' not in text  # unreadable: no sample
    assert ('netagent_remediation_ceiling_reached{key="net.netfilter.nf_conntrack_max"} 1.0'
            in text)
    off = CollectorRegistry()
    off.register(StatusCollector(families, lambda: None))
    assert "netagent_remediation" not in generate_latest(off).decode()


def consumer_update(count: int) -> Any:
    from netagent.model import NeighbourSnapshot, SourceRun
    from netagent.state import AgentState, SourceState, Update
    from tests.unit.test_neighbour_checks import observation

    snapshot = NeighbourSnapshot({"ipv4": observation(count)})
    state = AgentState(sources={"neighbours": SourceState(
        "neighbours", SourceRun("neighbours", True, 0.01), observation=snapshot)})
    return Update(state)


def test_the_agent_consumer_acts_in_apply_and_only_says_in_dry_run(
        tmp_path: Path, caplog: Any) -> None:
    import dataclasses
    import logging

    from netagent.agent import RemediationConsumer
    from netagent.config import Config

    caplog.set_level(logging.INFO, logger="netagent")
    r = tree(tmp_path)
    dry = RemediationConsumer(Config(remediation=dataclasses.replace(r, mode="dry-run")),
                              now=lambda: 1000.0)
    dry.consume(consumer_update(800))
    dry.consume(consumer_update(800))  # the same plan: said once
    assert value(r, f"{V4}3") == 1024
    said = [rec for rec in caplog.records if "would change" in rec.getMessage()]
    assert len(said) == 1 and f"{V4}3 1024 -> 2048" in said[0].getMessage()
    assert dry.status().mode == "dry-run" and dry.status().actions == {}

    acting = RemediationConsumer(Config(remediation=dataclasses.replace(r, mode="apply")),
                                 now=lambda: 1000.0)
    acting.consume(consumer_update(800))
    assert (value(r, f"{V4}3"), value(r, f"{V4}2"), value(r, f"{V4}1")) == (2048, 1024, 256)
    status = acting.status()
    assert status.actions[(f"{V4}3", "applied")] == 1 and status.values[f"{V4}3"] == 2048
    assert status.managed[f"{V4}3"] is True
    applied = [rec for rec in caplog.records if rec.getMessage().startswith(
        f"remediation: {V4}3 1024 -> 2048")]
    assert len(applied) == 1
    # an unreadable journal stops remediation, with one log line, and no write
    Path(r.state_dir, "journal.json").write_text("not json")
    acting.consume(consumer_update(1900))
    acting.consume(consumer_update(1900))
    assert value(r, f"{V4}3") == 2048
    assert len([rec for rec in caplog.records if "remediation stopped" in rec.getMessage()]) == 1


def test_remediation_outcomes_become_events_on_the_node(tmp_path: Path) -> None:
    """The agent hands each outcome to the Kubernetes reporter (``serve`` wires
    ``listeners=[reporter.notify_action]``): applied is a Normal event, refused at a
    ceiling a Warning, both on the Node."""
    import dataclasses

    from labkit.fakeapi import FakeAPI

    from netagent.agent import RemediationConsumer
    from netagent.config import ClusterConfig, Config
    from netagent.kubereport.reporter import KubeReporter
    from netagent.parse.kube import KubeTarget
    from netagent.sources.kubeapi import KubeClient

    r = tree(tmp_path)
    doc = {"kind": "NodeList", "apiVersion": "v1",
           "items": [{"metadata": {"name": "node-a", "uid": "uid-a"}}]}
    with FakeAPI(doc) as api:
        config = Config(remediation=dataclasses.replace(
            r, mode="apply", ceilings=(f"{V4}3=2048",)), cluster=ClusterConfig())
        reporter = KubeReporter(config, "node-a", client=KubeClient(
            KubeTarget(server=api.url, origin="test"), timeout=2.0))
        acting = RemediationConsumer(config, now=lambda: 1000.0,
                                     listeners=[reporter.notify_action])
        for count in (800, 1900):  # raised to 2048, then at its ceiling of 2048
            update = consumer_update(count)
            acting.consume(update)
            reporter.consume(update)
        events = [body for method, body in api.event_writes() if method == "POST"]
    assert value(r, f"{V4}3") == 2048
    kinds = {(e["type"], e["reason"]) for e in events}
    assert ("Normal", "RemediationApplied") in kinds
    assert ("Warning", "RemediationRefused") in kinds
    applied = next(e for e in events if e["reason"] == "RemediationApplied"
                   and e["message"].startswith(f"{V4}3:"))
    assert "1024 -> 2048" in applied["message"]
    refused = next(e for e in events if e["reason"] == "RemediationRefused")
    assert "ceiling" in refused["message"] and refused["involvedObject"]["uid"] == "uid-a"
