"""The Prometheus collector, rendered and parsed back as Prometheus would read it."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from netagent import __version__
from netagent.config import parse_listen
from netagent.errors import ConfigError
from netagent.exporter.collector import NetagentCollector
from netagent.exporter.neighbours import STATES
from netagent.exporter.server import HttpServer, make_app, make_registry
from netagent.model import CheckResult, KernelVersion, SourceRun, Status
from netagent.state import AgentState, SourceState
from tests.unit.exporter_records import HERE, ip_neigh_states, proc_int, snapshot, stat_column_sum

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def render(state: AgentState) -> bytes:
    registry = CollectorRegistry()
    registry.register(NetagentCollector(lambda: state))
    return generate_latest(registry)


def parse(text: bytes) -> tuple[Samples, dict[str, str]]:
    """(sample name, sorted labels) -> value, and family name -> type."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text.decode()):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def up_state(obs: object = None, *, ok: bool = True, error: str | None = None,
             checks: tuple[CheckResult, ...] = ()) -> AgentState:
    run = SourceRun(name="neighbours", ok=ok, duration_seconds=0.0123, error=error)
    return AgentState(sources={"neighbours": SourceState("neighbours", run, obs)},
                      checks=checks)


def test_neighbour_series_match_ip_neigh_show_and_proc() -> None:
    samples, types = parse(render(up_state(snapshot())))
    oracle = ip_neigh_states()
    for family in ("ipv4", "ipv6"):
        for state in STATES:  # every state is present, zeros included
            assert value(samples, "netagent_neighbour_entries", family=family, state=state) \
                == oracle[family].get(state, 0)
        # Linux >= 5.0: PERMANENT entries do not count against gc_thresh
        expected = sum(n for state, n in oracle[family].items() if state != "permanent")
        assert value(samples, "netagent_neighbour_gc_entries", family=family) == expected
        for level in ("1", "2", "3"):
            assert value(samples, "netagent_neighbour_gc_thresh", family=family, level=level) \
                == proc_int(f"sys/net/{family}/neigh/default/gc_thresh{level}")
        assert value(samples, "netagent_neighbour_table_fulls_total", family=family) \
            == stat_column_sum(family, "table_fulls")
        assert value(samples, "netagent_neighbour_forced_gc_runs_total", family=family) \
            == stat_column_sum(family, "forced_gc_runs")
    assert oracle["ipv4"]["permanent"] and oracle["ipv4"]["stale"]  # the capture is mixed
    assert types["netagent_neighbour_table_fulls"] == "counter"
    assert types["netagent_neighbour_forced_gc_runs"] == "counter"
    assert types["netagent_neighbour_gc_entries"] == "gauge"
    assert value(samples, "netagent_source_up", source="neighbours") == 1
    assert value(samples, "netagent_collect_duration_seconds", source="neighbours") == 0.0123
    assert value(samples, "netagent_build_info", version=__version__) == 1


def test_no_series_per_neighbour_namespace_or_device() -> None:
    samples, _ = parse(render(up_state(snapshot())))
    label_names = {k for _, labels in samples for k, _ in labels}
    assert label_names <= {"family", "state", "level", "source", "version", "check"}
    # 2 families x (9 states + 1 counted + 3 levels + 2 counters), plus up/duration/build
    assert len(samples) == 2 * (len(STATES) + 1 + 3 + 2) + 3


def test_before_linux_5_every_entry_counts() -> None:
    snap = snapshot()
    old = {f: dataclasses.replace(o, kernel=KernelVersion("4.19.0", 4, 19, 0))
           for f, o in snap.families.items()}
    samples, _ = parse(render(up_state(dataclasses.replace(snap, families=old))))
    # the kernel's own global `entries` (first column of the stat file) is then exact
    entries = int((HERE / "proc/net/stat/arp_cache").read_text().split("\n")[1].split()[0], 16)
    assert value(samples, "netagent_neighbour_gc_entries", family="ipv4") == entries
    oracle = ip_neigh_states()["ipv4"]
    assert entries != sum(n for s, n in oracle.items() if s != "permanent")


def test_unreadable_parts_leave_their_series_out() -> None:
    snap = snapshot()
    v4 = dataclasses.replace(snap.families["ipv4"], limits=None, stats=None,
                             problems={"limits": "no such file"})
    samples, _ = parse(render(up_state(dataclasses.replace(
        snap, families={"ipv4": v4, "ipv6": snap.families["ipv6"]}))))
    present = names(samples)
    assert ("netagent_neighbour_gc_thresh", (("family", "ipv4"), ("level", "3"))) not in samples
    assert value(samples, "netagent_neighbour_gc_thresh", family="ipv6", level="3") > 0
    assert ("netagent_neighbour_table_fulls_total", (("family", "ipv4"),)) not in samples
    assert "netagent_neighbour_entries" in present  # the table itself was read


def test_failed_source_is_down_and_the_scrape_still_succeeds() -> None:
    unknown = CheckResult(id="neighbour.ipv4", status=Status.UNKNOWN, summary="no netlink")
    samples, _ = parse(render(up_state(None, ok=False, error="cannot open a netlink socket",
                                       checks=(unknown,))))
    assert value(samples, "netagent_source_up", source="neighbours") == 0
    assert value(samples, "netagent_check_status", check="neighbour.ipv4") == 3
    assert not {n for n in names(samples) if n.startswith("netagent_neighbour_")}


def test_a_module_that_cannot_export_marks_the_source_down(
        caplog: pytest.LogCaptureFixture) -> None:
    # an observation of the wrong type stands for any bug in a per-source module
    registry = CollectorRegistry()
    registry.register(NetagentCollector(lambda: up_state("not a snapshot")))
    for _ in range(3):
        samples, _ = parse(generate_latest(registry))
        assert value(samples, "netagent_source_up", source="neighbours") == 0
        assert value(samples, "netagent_build_info", version=__version__) == 1
    assert len(caplog.records) == 1  # logged once, not at every scrape


def test_check_status_uses_the_exit_codes() -> None:
    checks = tuple(CheckResult(id=f"neighbour.{f}", status=s, summary="")
                   for f, s in (("ipv4", Status.CRITICAL), ("ipv6", Status.WARNING)))
    samples, _ = parse(render(up_state(snapshot(), checks=checks)))
    assert value(samples, "netagent_check_status", check="neighbour.ipv4") == 2
    assert value(samples, "netagent_check_status", check="neighbour.ipv6") == 1


def test_promtool_finds_no_problem_in_the_exposition() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian package 'prometheus'"
    proc = subprocess.run([promtool, "check", "metrics"], input=render(up_state(snapshot())),
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not proc.stdout.strip() and not proc.stderr.strip()


# -- the HTTP endpoints ---------------------------------------------------------------------

@pytest.fixture
def server() -> Iterator[tuple[HttpServer, list[AgentState]]]:
    holder: list[AgentState] = [AgentState()]
    srv = HttpServer(make_app(make_registry(lambda: holder[0]),
                              ready=lambda: bool(holder[0].sources)),
                     host="127.0.0.1", port=0)
    srv.start()
    try:
        yield srv, holder
    finally:
        srv.stop()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_endpoints(server: tuple[HttpServer, list[AgentState]]) -> None:
    srv, holder = server
    assert get(srv.port, "/healthz")[0] == 200
    assert get(srv.port, "/readyz")[0] == 503
    status, body = get(srv.port, "/metrics")
    assert status == 200 and "netagent_build_info" in body and "netagent_neighbour" not in body
    assert "process_resident_memory_bytes" in body
    holder[0] = up_state(snapshot())
    assert get(srv.port, "/readyz")[0] == 200
    status, body = get(srv.port, "/metrics")
    assert 'netagent_neighbour_gc_thresh{family="ipv4",level="3"}' in body
    assert get(srv.port, "/nothing")[0] == 404


@pytest.mark.parametrize("text, expected", [
    ("0.0.0.0:9465", ("0.0.0.0", 9465)),
    ("127.0.0.1:1", ("127.0.0.1", 1)),
    ("[::]:9465", ("::", 9465)),
    (":9465", ("0.0.0.0", 9465)),
])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9465", "host:9465", "0.0.0.0:0", "0.0.0.0:70000",
                                  "0.0.0.0:http"])
def test_bad_listen_addresses_name_the_problem(text: str) -> None:
    with pytest.raises(ConfigError, match="listen address"):
        parse_listen(text)


def test_every_series_is_in_the_metric_contract() -> None:
    """What the exporter serves is what daemonset/ alerts and dashboards may ask for."""
    from tests.daemonset.conftest import CONTRACT

    checks = (CheckResult(id="neighbour.ipv4", status=Status.OK, summary=""),)
    registry = make_registry(lambda: up_state(snapshot(), checks=checks))
    samples, _ = parse(generate_latest(registry))
    ours = {(name, labels) for name, labels in samples if name.startswith("netagent_")}
    assert {name for name, _ in samples} - {name for name, _ in ours} <= {
        name for name, _ in samples if name.startswith("process_")}
    for name, labels in ours:
        assert name in CONTRACT.series_names(), name
        assert {k for k, _ in labels} == CONTRACT.labels_of(name) - CONTRACT.target_labels


# -- the HTTP server under load and misuse -----------------------------------------------------

def request(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_methods_other_than_get_and_head_are_405(server: tuple[HttpServer, list[AgentState]]
                                                 ) -> None:
    srv, _ = server
    for method in ("PUT", "POST", "DELETE"):
        for path in ("/healthz", "/metrics", "/readyz"):
            status, headers, _ = request(srv.port, method, path)
            assert status == 405 and headers["allow"] == "GET, HEAD", (method, path)


def test_head_gives_the_get_headers_without_a_body(server: tuple[HttpServer, list[AgentState]]
                                                   ) -> None:
    srv, holder = server
    holder[0] = up_state(snapshot())
    status, headers, body = request(srv.port, "HEAD", "/metrics")
    assert status == 200 and body == b""
    assert headers["content-type"].startswith("text/plain")
    assert int(headers["content-length"]) > 1000  # the length GET would send
    assert request(srv.port, "HEAD", "/healthz")[:1] == (200,)


def _threads() -> int:
    import threading

    return threading.active_count()


def test_idle_connections_wait_without_threads_and_are_closed(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    import socket
    import time

    from netagent.exporter import server as server_module

    monkeypatch.setattr(server_module._PooledServer, "idle_timeout", 1.5)
    holder: list[AgentState] = [up_state(snapshot())]
    srv = HttpServer(make_app(make_registry(lambda: holder[0]), ready=lambda: True),
                     host="127.0.0.1", port=0)
    srv.start()
    before = _threads()
    idle: list[socket.socket] = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        deadline = time.monotonic() + 10
        while srv.waiting < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.waiting == 1000
        # /metrics is answered while a thousand clients sit idle, by a bounded pool
        for _ in range(5):
            status, body = get(srv.port, "/metrics")
            assert status == 200 and "netagent_build_info" in body
        assert _threads() <= before + _PooledServer_workers()
        # past the idle timeout the server closes them: each client reads EOF
        deadline = time.monotonic() + 10
        while srv.waiting and time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.waiting == 0
        idle[0].settimeout(2)
        assert idle[0].recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
        srv.stop()


def _PooledServer_workers() -> int:
    from netagent.exporter.server import _PooledServer

    return _PooledServer.workers


def test_concurrent_scrapes_all_succeed(server: tuple[HttpServer, list[AgentState]]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    srv, holder = server
    holder[0] = up_state(snapshot())
    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(lambda _: request(srv.port, "GET", "/metrics")[0], range(300)))
    assert results == [200] * 300
