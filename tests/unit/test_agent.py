"""The daemon's scheduler, state and logs, driven by an injected clock (no sleeping)."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from netagent.agent import Agent, setup_logging
from netagent.config import AgentIntervals, AgentSettings, Config
from netagent.errors import SourceError
from netagent.exporter.collector import NetagentCollector
from netagent.model import NeighbourSnapshot, NeighbourStats, Status
from netagent.state import SourceTransition, Update
from tests.unit.exporter_records import snapshot


class FakeClock:
    """Monotonic time that moves only when the agent waits (or a source takes time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


class RecordedNeighbours:
    """Replays the recorded neighbour table; ``table_fulls`` rises by ``fulls[n]`` at call n."""

    name = "neighbours"

    def __init__(self, clock: FakeClock, *, fail: frozenset[int] = frozenset(),
                 fulls: dict[int, int] | None = None, takes: float = 0.0) -> None:
        self.clock = clock
        self.fail = fail
        self.fulls = fulls or {}
        self.takes = takes
        self.calls: list[float] = []

    def sample(self) -> NeighbourSnapshot:
        return self.collect()

    def collect(self) -> NeighbourSnapshot:
        self.calls.append(self.clock())
        n = len(self.calls)
        self.clock.now += self.takes
        if n in self.fail:
            raise SourceError("ipv4 neighbours in host: no answer from the kernel in 10.0 s")
        extra = sum(v for k, v in self.fulls.items() if k <= n)
        base = snapshot(monotonic=self.clock())
        families = {}
        for family, obs in base.families.items():
            assert obs.stats is not None
            counters = dict(obs.stats.counters)
            counters["table_fulls"] = counters.get("table_fulls", 0) + extra
            families[family] = dataclasses.replace(
                obs, stats=NeighbourStats(entries=obs.stats.entries, counters=counters))
        return NeighbourSnapshot(families)


class Probe:
    """A second source with no metrics module: only up and duration are exported for it."""

    name = "dns"

    def __init__(self, clock: FakeClock, *, error: BaseException | None = None) -> None:
        self.clock = clock
        self.error = error
        self.calls: list[float] = []

    def sample(self) -> object:
        return self.collect()

    def collect(self) -> object:
        self.calls.append(self.clock())
        if self.error is not None:
            raise self.error
        return {"probes": 0}


def config(*, jitter: float = 0.1, neighbours: float = 15, dns: float = 30) -> Config:
    return Config(agent=AgentSettings(jitter=jitter, intervals=AgentIntervals(
        neighbours=neighbours, dns=dns)))


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def metrics(agent: Agent) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(NetagentCollector(agent.state))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(generate_latest(registry).decode())
            for s in fam.samples}


def test_each_source_on_its_own_interval_with_bounded_jitter() -> None:
    for name, interval in (("neighbours", 15), ("dns", 30)):
        clock = FakeClock()
        source = RecordedNeighbours(clock) if name == "neighbours" else Probe(clock)
        agent = Agent({name: source}, config(), clock=clock, wait=clock.wait,
                      rng=random.Random(7))
        start = clock.now
        agent.run_source(name, max_rounds=50)
        assert len(source.calls) == 50
        assert source.calls[0] - start <= 1.0
        assert all(0.9 * interval <= g <= 1.1 * interval for g in gaps(source.calls)), \
            gaps(source.calls)
        assert len({round(g, 6) for g in gaps(source.calls)}) > 5  # jitter does vary
        # the loop sleeps until the source is due, never busy-waits
        assert all(w > 0 for w in clock.waits) and len(clock.waits) <= 50


def test_a_slow_source_does_not_delay_the_others() -> None:
    class Slow:
        name = "dns"

        def __init__(self) -> None:
            self.release = threading.Event()
            self.returned = threading.Event()

        def sample(self) -> None:
            return None

        def collect(self) -> object:
            self.release.wait(timeout=5)  # a DNS round waiting out dead resolvers
            self.returned.set()
            return {}

    neigh, slow = RecordedNeighbours(FakeClock()), Slow()
    agent = Agent({"neighbours": neigh, "dns": slow}, config(jitter=0, neighbours=0.1))
    worker = threading.Thread(target=agent.run, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while len(neigh.calls) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(neigh.calls) >= 5, "the table collections waited for the slow source"
        assert not agent.ready()  # dns has not completed its first collection yet
    finally:
        agent.stop()
        slow.release.set()  # after stop: its late collection must not be recorded
        worker.join(timeout=3)
    assert not worker.is_alive()
    deadline = time.monotonic() + 5
    while not slow.returned.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow.returned.is_set()
    time.sleep(0.05)  # past the moment it would have been recorded
    assert "dns" not in agent.state().sources


def test_a_slow_collection_keeps_the_rhythm() -> None:
    clock = FakeClock()
    neigh = RecordedNeighbours(clock, takes=4.0)
    agent = Agent({"neighbours": neigh}, config(jitter=0), clock=clock, wait=clock.wait)
    agent.run_source("neighbours", max_rounds=10)
    assert gaps(neigh.calls) == [15.0] * 9


def test_ready_after_every_source_completed_once_even_a_failing_one() -> None:
    clock = FakeClock()
    neigh = RecordedNeighbours(clock)
    dns = Probe(clock, error=SourceError("resolv.conf: no nameserver"))
    agent = Agent({"neighbours": neigh, "dns": dns}, config(), clock=clock, wait=clock.wait)
    assert not agent.ready()
    agent.collect_one("neighbours")
    assert not agent.ready()
    agent.collect_one("dns")
    assert agent.ready()
    m = metrics(agent)
    assert m[("netagent_source_up", (("source", "neighbours"),))] == 1
    assert m[("netagent_source_up", (("source", "dns"),))] == 0
    assert ("netagent_neighbour_gc_entries", (("family", "ipv4"),)) in m


def test_checks_see_the_previous_observation_as_baseline() -> None:
    clock = FakeClock()
    # table_fulls rises before the 3rd collection; the 2nd fails
    neigh = RecordedNeighbours(clock, fail=frozenset({2}), fulls={3: 4})
    agent = Agent({"neighbours": neigh}, config(jitter=0), clock=clock, wait=clock.wait)
    statuses = []
    for _ in range(4):
        agent.run_source("neighbours", max_rounds=1)
        statuses.append({c.id: c for c in agent.state().checks}["neighbour.ipv4"])
    assert [c.status for c in statuses] == [Status.OK, Status.UNKNOWN, Status.CRITICAL,
                                            Status.OK]
    # the 3rd is compared with the 1st (the last success), 30 s earlier
    assert statuses[2].evidence["interval_seconds"] == 30.0
    assert statuses[2].evidence["table_fulls_during_check"] == 4
    assert "table_fulls rose" in statuses[2].summary
    assert statuses[3].evidence["table_fulls_during_check"] == 0
    m = metrics(agent)
    assert m[("netagent_check_status", (("check", "neighbour.ipv4"),))] == 0


def test_one_log_line_per_state_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="netagent")
    clock = FakeClock()
    neigh = RecordedNeighbours(clock, fail=frozenset({3, 4}), fulls={6: 1})
    agent = Agent({"neighbours": neigh}, config(jitter=0), clock=clock, wait=clock.wait)
    agent.run_source("neighbours", max_rounds=12)
    assert agent.flush()  # the log is a consumer: its lines come from its own mailbox
    lines = [r.getMessage().split(":")[0] for r in caplog.records]
    assert lines == [
        "source neighbours up (collected in 0.000 s)",
        "check neighbour.ipv4 none -> ok",
        "check neighbour.ipv6 none -> ok",
        "source neighbours down",
        "check neighbour.ipv4 ok -> unknown",
        "check neighbour.ipv6 ok -> unknown",
        "source neighbours up (collected in 0.000 s)",
        "check neighbour.ipv4 unknown -> ok",
        "check neighbour.ipv6 unknown -> ok",
        "check neighbour.ipv4 ok -> critical",
        "check neighbour.ipv6 ok -> critical",
        "check neighbour.ipv4 critical -> ok",
        "check neighbour.ipv6 critical -> ok",
    ], lines
    assert len(neigh.calls) == 12


def test_an_unexpected_error_stays_inside_its_source(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    neigh, dns = RecordedNeighbours(clock), Probe(clock, error=KeyError("bug"))
    agent = Agent({"neighbours": neigh, "dns": dns}, config(), clock=clock, wait=clock.wait)
    agent.run_source("dns", max_rounds=3)
    agent.run_source("neighbours", max_rounds=3)
    assert len(dns.calls) == 3 and len(neigh.calls) == 3
    assert agent.state().sources["dns"].run.error == "unexpected KeyError: 'bug'"
    assert agent.state().sources["neighbours"].up
    # a bug is logged with its traceback, once however often it recurs
    assert len([r for r in caplog.records if r.exc_info]) == 1


def test_stop_ends_a_sleeping_agent_at_once() -> None:
    neigh = RecordedNeighbours(FakeClock())
    agent = Agent({"neighbours": neigh}, config(neighbours=3600))
    worker = threading.Thread(target=agent.run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 5
    while not neigh.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert neigh.calls, "the first collection did not happen"
    started = time.monotonic()
    agent.stop()
    worker.join(timeout=2)
    assert not worker.is_alive()
    assert time.monotonic() - started < 1.0


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("netagent")
    saved: dict[str, Any] = {"handlers": logger.handlers[:], "level": logger.level,
                             "propagate": logger.propagate}
    try:
        yield
    finally:
        logger.handlers[:] = saved["handlers"]
        logger.setLevel(saved["level"])
        logger.propagate = saved["propagate"]


def test_json_log_lines_carry_the_event(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("json", stream=stream)
    clock = FakeClock()
    agent = Agent({"dns": Probe(clock, error=SourceError("no nameserver"))}, config(),
                  clock=clock, wait=clock.wait)
    agent.collect_one("dns")
    agent.collect_one("dns")  # still down: no second line
    assert agent.flush()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["source_down", "check_status"]
    assert records[1]["to"] == "unknown" and records[1]["from"] is None
    assert records[0]["source"] == "dns"
    assert records[0]["error"] == "no nameserver" and records[0]["level"] == "warning"
    assert records[0]["time"].endswith("Z")


def test_agent_section_of_the_configuration(tmp_path: Any) -> None:
    from netagent.config import load

    path = tmp_path / "netagent.yaml"
    path.write_text("agent:\n  listen: 127.0.0.1:9000\n  jitter: 0\n"
                    "  intervals:\n    neighbours: 1\n    cluster: 600\n")
    cfg = load(path)
    assert cfg.agent.listen == "127.0.0.1:9000" and cfg.agent.jitter == 0
    assert cfg.agent.intervals.neighbours == 1.0 and cfg.agent.intervals.cluster == 600.0
    assert cfg.agent.intervals.dns == 30.0  # defaults kept for what is not set


@pytest.mark.parametrize("text, message", [
    ("agent:\n  intervals:\n    neighbours: 0\n", "agent.intervals.neighbours"),
    ("agent:\n  intervals:\n    arp: 5\n", "unknown key 'agent.intervals.arp'"),
    ("agent:\n  jitter: 2\n", "agent.jitter"),
])
def test_bad_agent_settings_name_the_key(tmp_path: Any, text: str, message: str) -> None:
    from netagent.config import load
    from netagent.errors import ConfigError

    path = tmp_path / "netagent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_run_with_a_bad_listen_address_exits_3(capsys: pytest.CaptureFixture[str],
                                               restore_logging: None) -> None:
    from netagent.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--listen", "localhost"])
    assert exit_info.value.code == 3
    assert "listen address 'localhost' must be HOST:PORT" in capsys.readouterr().err


def test_every_source_has_an_interval() -> None:
    from netagent.wiring import SOURCE_NAMES

    intervals = AgentIntervals()
    assert {f.name for f in dataclasses.fields(intervals)} == set(SOURCE_NAMES)
    assert intervals.neighbours == intervals.conntrack == intervals.overlay == 15
    assert intervals.dns == 30 and intervals.cluster == 30  # the API: cluster.poll_seconds


def test_a_collection_rejudges_only_the_checks_that_read_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from netagent.checks import registry

    clock = FakeClock()
    agent = Agent({"neighbours": RecordedNeighbours(clock), "dns": Probe(clock)}, config(),
                  clock=clock, wait=clock.wait)
    agent.collect_one("neighbours")
    agent.collect_one("dns")
    judged: list[list[str]] = []
    real = registry.evaluate

    def spy(obs: Any, cfg: Config, *, sources: Any) -> Any:
        judged.append(list(sources))
        return real(obs, cfg, sources=sources)

    monkeypatch.setattr(registry, "evaluate", spy)
    agent.collect_one("dns")
    assert judged == [["dns"]]  # the neighbour checks do not read the dns source
    judged.clear()
    agent.collect_one("neighbours")
    assert judged == [["neighbours"]]
    # the neighbour verdicts are still reported beside the dns ones
    assert {c.id for c in agent.state().checks} >= {"neighbour.ipv4", "neighbour.ipv6"}
    assert registry.inputs("dns") == {"dns", "conntrack"}
    assert registry.inputs("conntrack") == {"conntrack"}


def test_a_bug_in_the_cluster_source_is_backed_off_and_logged_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A bug (not a SourceError) in the cluster source used to skip its backoff: the API was
    asked every interval and a traceback logged each time (21 in 3 minutes)."""
    from labkit.fakeapi import FakeAPI
    from labkit.overlay import node_list

    from netagent.config import ClusterConfig
    from netagent.sources import cluster as cluster_module

    def broken(body: bytes) -> None:
        raise KeyError("items")

    monkeypatch.setattr(cluster_module, "parse_node_page", broken)
    clock = FakeClock()
    with FakeAPI(node_list(3)) as api:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "current-context: t\ncontexts:\n- name: t\n  context: {cluster: c}\n"
            f"clusters:\n- name: c\n  cluster:\n    server: {api.url}\n")
        source = cluster_module.ClusterSource(
            ClusterConfig(kubeconfig=str(kubeconfig), poll_seconds=300), env={},
            clock=clock, rand=lambda: 0.0)
        agent = Agent({"cluster": source}, Config(), clock=clock, wait=clock.wait)
        # 30 s interval, jitter up to 10 %: seven waits are at least three minutes
        agent.run_source("cluster", max_rounds=8)
        assert clock.now - 1000.0 >= 180
        assert len(api.requests) == 1  # asked once, then the poll interval is waited out
    errors = {agent.state().sources["cluster"].run.error}
    assert all("KeyError" in e for e in errors if e)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1


class BlockedConsumer:
    """Takes updates only once released; records every transition and state it got."""

    name = "blocked"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.updates: list[Update] = []

    def consume(self, update: Update) -> None:
        self.release.wait(timeout=30)
        self.updates.append(update)


class FailingConsumer:
    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    def consume(self, update: Update) -> None:
        self.calls += 1
        raise RuntimeError("the API server said no")


def test_a_stuck_or_failing_consumer_never_delays_a_collection(
        caplog: pytest.LogCaptureFixture) -> None:
    """While one consumer is stuck and another raises at every update, 200 collections
    go at the speed of the collections; then the stuck one gets every transition, in
    order, and the newest state, and the failing one's error is logged once."""
    clock = FakeClock()
    neigh = RecordedNeighbours(clock, fail=frozenset(range(3, 200, 2)))  # up, down, ...
    blocked, failing = BlockedConsumer(), FailingConsumer()
    agent = Agent({"neighbours": neigh}, config(jitter=0), clock=clock, wait=clock.wait,
                  consumers=[blocked, failing])
    stop = threading.Event()
    for mailbox in agent.mailboxes:
        mailbox.start(stop)
    try:
        start = time.monotonic()
        runs = [agent.collect_one("neighbours").ok for _ in range(200)]
        took = time.monotonic() - start
        assert len(blocked.updates) == 0  # still stuck on the first update
        blocked.release.set()
        assert agent.flush(timeout=20)
    finally:
        stop.set()
    assert took < 10, took  # each collection alone, not waiting for a consumer
    got = [t for u in blocked.updates for t in u.transitions if isinstance(t, SourceTransition)]
    changes = [ok for k, ok in enumerate(runs) if k == 0 or ok != runs[k - 1]]
    assert len(changes) > 150  # the source flapped
    assert [t.after.ok for t in got] == changes
    assert blocked.updates[-1].state is agent.state()
    assert failing.calls >= 1
    failures = [r for r in caplog.records if "consumer failing failed" in r.getMessage()]
    assert len(failures) == 1


def test_check_reports_a_bug_in_one_source_as_unknown_with_its_traceback() -> None:
    from netagent import runner
    from netagent.report import text as text_report

    clock = FakeClock()
    report = runner.check_once(
        {"neighbours": RecordedNeighbours(clock), "dns": Probe(clock, error=KeyError("bug"))},
        config(), interval=0, node="n")
    dns_checks = [c for c in report.checks if c.id.startswith("dns")]
    assert dns_checks and all(c.status is Status.UNKNOWN for c in dns_checks)
    assert {c.id for c in report.checks} >= {"neighbour.ipv4", "neighbour.ipv6"}
    (run,) = [s for s in report.sources if s.name == "dns"]
    assert run.error == "unexpected KeyError: 'bug'"
    verbose = text_report.render(report, verbose=True)
    assert "Traceback (most recent call last)" in verbose and "KeyError: 'bug'" in verbose
    assert "Traceback" not in text_report.render(report)


class RampingNeighbours:
    """An IPv4 table growing by ``rate`` entries a second, until ``until`` entries."""

    name = "neighbours"

    def __init__(self, clock: FakeClock, *, start: int, rate: float, until: int) -> None:
        self.clock, self.start, self.rate, self.until = clock, start, rate, until
        self.t0 = clock()

    def sample(self) -> NeighbourSnapshot:
        return self.collect()

    def collect(self) -> NeighbourSnapshot:
        from tests.unit.test_neighbour_checks import observation

        now = self.clock()
        count = min(self.until, int(self.start + self.rate * (now - self.t0)))
        return NeighbourSnapshot({"ipv4": observation(count, at=now)})


def test_the_agent_forecasts_from_its_history_warns_and_exports_the_time_left() -> None:
    """+0.5 entries/s from 300 of 1,024 entries, a sample every 15 s: the forecast warns within
    the hour, the check says so, and the time left is exported while it fills."""
    clock = FakeClock()
    source = RampingNeighbours(clock, start=300, rate=0.5, until=390)
    agent = Agent({"neighbours": source}, config(jitter=0), clock=clock, wait=clock.wait,
                  rng=random.Random(1), consumers=[])
    agent.run_source("neighbours", max_rounds=5)  # 60 s of history: fewer than 10 samples
    assert agent.state().forecasts["neighbour.ipv4"].seconds_to_full is None
    assert ("netagent_neighbour_exhaustion_seconds", (("family", "ipv4"),)) not in metrics(agent)
    agent.run_source("neighbours", max_rounds=6)  # 10 samples, ~400 entries, growing
    forecast = agent.state().forecasts["neighbour.ipv4"]
    (check,) = agent.state().checks
    assert forecast.seconds_to_full == pytest.approx((1024 - forecast.count) / 0.5, rel=0.05)
    assert check.status is Status.WARNING  # 37% of gc_thresh3: only the forecast warns
    assert "+30 entries/min, full in ~22 min" in check.summary
    exported = metrics(agent)[("netagent_neighbour_exhaustion_seconds", (("family", "ipv4"),))]
    assert exported == pytest.approx(forecast.seconds_to_full)
    # demand stops growing at 390: within five collections the warning clears
    agent.run_source("neighbours", max_rounds=2)
    assert agent.state().forecasts["neighbour.ipv4"].count == 390
    agent.run_source("neighbours", max_rounds=5)
    assert agent.state().checks[0].status is Status.OK
    assert ("netagent_neighbour_exhaustion_seconds", (("family", "ipv4"),)) not in metrics(agent)
