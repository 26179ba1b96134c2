"""Node conditions and events against the in-test API server (``labkit.fakeapi``), over real
HTTP on loopback, with the reporter's clocks injected.

The request and answer shapes are the API reference's: a strategic-merge patch of
``/api/v1/nodes/<name>/status`` whose ``status.conditions`` merge by ``type``; core/v1
Events created with ``POST /api/v1/namespaces/<ns>/events`` (201 and the Event), repeats
patched; failures as ``Status`` bodies.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest
from labkit.fakeapi import FakeAPI, status
from labkit.serve import free_port

from netagent.config import ClusterConfig, Config, KubernetesConfig
from netagent.kubereport import conditions as plan
from netagent.kubereport.reporter import KubeReporter, enabled
from netagent.model import CheckResult, Status
from netagent.parse.kube import KubeTarget
from netagent.sources.kubeapi import KubeClient
from netagent.state import AgentState, CheckTransition, Update

NODE = "node-a"


def dead_server() -> str:
    """An API server URL on a loopback port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


def node_list() -> dict[str, Any]:
    return {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
            "items": [{"metadata": {"name": NODE, "uid": "6f1c-node-a"}},
                      {"metadata": {"name": "node-b", "uid": "77aa-node-b"}}]}


class Clock:
    def __init__(self) -> None:
        self.mono, self.wall = 1000.0, 1_796_000_000.0

    def tick(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with FakeAPI(node_list()) as server:
        yield server


def reporter(api: FakeAPI | str, clock: Clock, **k: Any) -> KubeReporter:
    """A reporter for the in-test API (or a URL), with ``clock`` injected."""
    config = Config(kubernetes=KubernetesConfig(**k),
                    cluster=ClusterConfig(api_timeout_seconds=1.0))
    server = api if isinstance(api, str) else api.url
    client = KubeClient(KubeTarget(server=server, origin="test"), timeout=1.0)
    return KubeReporter(config, NODE, client=client, now=lambda: clock.wall,
                        clock=lambda: clock.mono, rng=random.Random(3))


def check(check_id: str, st: Status, summary: str = "") -> CheckResult:
    return CheckResult(id=check_id, status=st, summary=summary or f"{check_id} is {st.label}")


class States:
    """Updates as the agent makes them: the new checks and the transitions since the last."""

    def __init__(self) -> None:
        self.checks: dict[str, CheckResult] = {}

    def __call__(self, *checks: CheckResult) -> Update:
        transitions = []
        for c in checks:
            before = self.checks.get(c.id)
            if before is None or before.status is not c.status:
                transitions.append(CheckTransition(before.status if before else None, c))
            self.checks[c.id] = c
        return Update(AgentState(checks=tuple(self.checks.values())), tuple(transitions))


def ours(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions}


def test_warning_then_ok_patches_the_condition_and_records_events(api: FakeAPI) -> None:
    clock, states = Clock(), States()
    r = reporter(api, clock)
    r.consume(states(check("neighbour.ipv4", Status.OK), check("neighbour.ipv6", Status.OK),
                     check("dns.resolvers", Status.OK)))
    assert api.requests[0][0] == f"/api/v1/nodes/{NODE}?resourceVersion=0"  # watch cache
    first = ours(api.condition_writes()[-1])
    assert first["NeighbourTablePressure"]["status"] == "False"
    assert first["NeighbourTablePressure"]["reason"] == "NeighbourTablesOK"
    assert first["DNSDegraded"]["status"] == "False"
    assert "ConntrackTablePressure" not in first  # no conntrack check: no condition
    assert api.event_writes() == []  # first verdicts that are ok are not news
    since = first["NeighbourTablePressure"]["lastTransitionTime"]

    clock.tick(30)
    r.consume(states(check("neighbour.ipv4", Status.WARNING,
                           "IPv4 neighbour (ARP) table: 600 of 1024 entries (59% of "
                           "gc_thresh3); above gc_thresh2 512 (forced GC runs)")))
    warned = ours(api.condition_writes()[-1])["NeighbourTablePressure"]
    assert warned["status"] == "True" and warned["reason"] == "NeighbourIPv4Warning"
    assert warned["message"].startswith("IPv4 neighbour (ARP) table: 600 of 1024")
    assert warned["lastTransitionTime"] != since
    (method, event), = api.event_writes()
    assert method == "POST" and event["type"] == "Warning"
    assert event["reason"] == "NeighbourIPv4Warning"
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": NODE,
                                       "uid": "6f1c-node-a"}
    assert event["metadata"]["namespace"] == "default" and event["count"] == 1
    assert event["message"].startswith("neighbour.ipv4 ok -> warning: IPv4 neighbour")

    # the node carries the kubelet's conditions untouched, and netagent's merged by type
    node = api.nodes[NODE]["status"]["conditions"]
    kinds = [c["type"] for c in node]
    assert kinds[:2] == ["MemoryPressure", "Ready"] and kinds.count("NeighbourTablePressure") == 1
    assert next(c for c in node if c["type"] == "Ready")["reason"] == "KubeletReady"

    clock.tick(30)
    r.consume(states(check("neighbour.ipv4", Status.OK)))
    cleared = ours(api.condition_writes()[-1])["NeighbourTablePressure"]
    assert cleared["status"] == "False" and cleared["reason"] == "NeighbourTablesOK"
    assert cleared["lastTransitionTime"] == plan.timestamp(clock.wall)
    method, event = api.event_writes()[-1]
    assert (method, event["type"], event["reason"]) == ("POST", "Normal", "NeighbourIPv4OK")


def test_unchanged_conditions_send_nothing_until_the_heartbeat(api: FakeAPI) -> None:
    clock, states = Clock(), States()
    r = reporter(api, clock, heartbeat_seconds=300)
    r.consume(states(check("conntrack.table", Status.WARNING, "conntrack 80%")))
    assert len(api.condition_writes()) == 1
    since = ours(api.condition_writes()[0])["ConntrackTablePressure"]["lastTransitionTime"]
    for _ in range(8):  # four minutes of collections, messages changing, status not
        clock.tick(30)
        r.consume(states(check("conntrack.table", Status.WARNING, f"conntrack {clock.mono}")))
    assert len(api.condition_writes()) == 1
    clock.tick(90)  # past 300 s (+/- 10% jitter)
    r.consume(states(check("conntrack.table", Status.WARNING, "conntrack 81%")))
    assert len(api.condition_writes()) == 2
    beat = ours(api.condition_writes()[1])["ConntrackTablePressure"]
    assert beat["lastTransitionTime"] == since  # only the heartbeat moved
    assert beat["lastHeartbeatTime"] == plan.timestamp(clock.wall)
    assert beat["message"] == "conntrack 81%"


def test_a_restart_keeps_the_transition_time_already_on_the_node(api: FakeAPI) -> None:
    clock, states = Clock(), States()
    reporter(api, clock).consume(states(check("overlay.flannel.1", Status.CRITICAL, "3 of 5")))
    since = ours(api.condition_writes()[-1])["OverlayPeersMissing"]["lastTransitionTime"]
    clock.tick(600)
    again = reporter(api, clock)  # a new agent process, the same finding
    again.consume(States()(check("overlay.flannel.1", Status.CRITICAL, "3 of 5")))
    cond = ours(api.condition_writes()[-1])["OverlayPeersMissing"]
    assert cond["reason"] == "OverlayFlannel1Critical" and cond["lastTransitionTime"] == since


def test_identical_events_bump_count_and_events_are_rate_limited(api: FakeAPI) -> None:
    clock = Clock()
    r = reporter(api, clock, event_burst=3, event_refill_seconds=300)
    r.consume(States()(check("dns.resolvers", Status.OK)))
    for _ in range(2):  # the same remediation outcome twice
        r.notify_action("net.ipv4.neigh.default.gc_thresh3", "refused", "at its ceiling 8192")
    r.consume(States()(check("dns.resolvers", Status.OK)))
    writes = api.event_writes()
    assert [m for m, _ in writes] == ["POST", "PATCH"]
    assert writes[0][1]["reason"] == "RemediationRefused" and writes[0][1]["type"] == "Warning"
    assert writes[1][1]["count"] == 2 and "lastTimestamp" in writes[1][1]
    (stored,) = api.events.values()
    assert stored["count"] == 2
    # a burst of three per reason, then one per 300 s
    for k in range(5):
        r.notify_action("net.netfilter.nf_conntrack_max", "failed", f"EPERM {k}")
    r.consume(States()(check("dns.resolvers", Status.OK)))
    failed = [b for m, b in api.event_writes() if m == "POST" and
              b["reason"] == "RemediationFailed"]
    assert len(failed) == 3 and r.limited == 2
    clock.tick(301)
    r.notify_action("net.netfilter.nf_conntrack_max", "failed", "EPERM 9")
    r.consume(States()(check("dns.resolvers", Status.OK)))
    assert len([b for m, b in api.event_writes() if b.get("reason") == "RemediationFailed"]) == 4
    # an event gone from the API (events expire) is created again, not patched
    api.events.clear()
    r.notify_action("net.ipv4.neigh.default.gc_thresh3", "refused", "at its ceiling 8192")
    r.consume(States()(check("dns.resolvers", Status.OK)))
    assert [m for m, _ in api.event_writes()[-2:]] == ["PATCH", "POST"]


@pytest.mark.parametrize("failure, words", [
    ((403, status(403, "Forbidden", 'nodes "node-a" is forbidden: User "system:serviceaccount:'
                  'netagent:netagent" cannot patch resource "nodes/status"')), "HTTP 403"),
    ((409, status(409, "Conflict", "Operation cannot be fulfilled on nodes")), "HTTP 409"),
    ((422, status(422, "Invalid", 'Node "node-a" is invalid')), "HTTP 422"),
    ((500, status(500, "InternalError", "etcdserver: request timed out")), "HTTP 500"),
])
def test_write_errors_are_logged_once_and_reporting_carries_on(
        api: FakeAPI, caplog: pytest.LogCaptureFixture, failure: tuple[int, bytes],
        words: str) -> None:
    clock, states = Clock(), States()
    r = reporter(api, clock)
    api.fail_writes = failure
    flip = [Status.WARNING, Status.OK]
    with caplog.at_level(logging.ERROR, logger="netagent.kubernetes"):
        for k in range(6):  # six collections, each retried once the backoff has passed
            r.consume(states(check("neighbour.ipv4", flip[k % 2])))
            clock.tick(700)
    errors = [rec for rec in caplog.records if rec.name == "netagent.kubernetes"]
    assert len(errors) == 1 and words in errors[0].getMessage(), [
        e.getMessage() for e in errors]
    attempts = len(api.condition_writes())
    assert attempts >= 5  # it kept trying, not once per collection but after each backoff
    api.fail_writes = None
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="netagent.kubernetes"):
        r.consume(states(check("neighbour.ipv4", Status.WARNING)))
    assert ours(api.condition_writes()[-1])["NeighbourTablePressure"]["status"] == "True"
    assert any("works again" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("code, reason", [(403, "Forbidden"), (404, "NotFound"),
                                          (422, "Invalid")])
def test_events_refused_for_good_are_dropped_and_hold_back_nothing(
        api: FakeAPI, caplog: pytest.LogCaptureFixture, code: int, reason: str) -> None:
    clock, states = Clock(), States()
    r = reporter(api, clock)
    api.fail_events = (code, status(code, reason, 'events is forbidden: User "system:'
                                    'serviceaccount:netagent:netagent" cannot create '
                                    'resource "events"'))
    flip = [Status.WARNING, Status.OK]
    with caplog.at_level(logging.ERROR, logger="netagent.kubernetes"):
        for k in range(6):  # a status change at every collection, 30 s apart
            r.consume(states(check("neighbour.ipv4", flip[k % 2])))
            clock.tick(30)
    # every change reached the Node at once: no backoff behind the refused events
    statuses = [ours(c)["NeighbourTablePressure"]["status"] for c in api.condition_writes()]
    assert statuses == ["True", "False"] * 3
    assert r.dropped == 6 and not r._queue
    errors = [rec.getMessage() for rec in caplog.records if rec.name == "netagent.kubernetes"]
    assert len(errors) == 1 and f"HTTP {code}" in errors[0] and "dropped" in errors[0], errors
    # a server error is not refusal for good: the event is kept and sent once it answers
    api.fail_events = (500, status(500, "InternalError", "etcdserver: request timed out"))
    r.consume(states(check("neighbour.ipv4", Status.WARNING)))
    assert r.dropped == 6 and len(r._queue) == 1
    api.fail_events = None
    clock.tick(700)
    r.consume(states(check("neighbour.ipv4", Status.WARNING)))
    assert not r._queue and api.event_writes()[-1][1]["reason"] == "NeighbourIPv4Warning"


def test_an_unknown_node_a_slow_and_a_dead_server_are_each_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    clock, states = Clock(), States()
    with FakeAPI({"kind": "NodeList", "apiVersion": "v1", "items": []}) as empty:
        r = reporter(empty, clock)
        with caplog.at_level(logging.ERROR, logger="netagent.kubernetes"):
            for _ in range(3):
                r.consume(states(check("dns.resolvers", Status.WARNING)))
                clock.tick(700)
        assert empty.condition_writes() == []
    with FakeAPI(node_list()) as slow:
        slow.delay = 1.5  # past the 1 s timeout
        r2 = reporter(slow, clock)
        with caplog.at_level(logging.ERROR, logger="netagent.kubernetes"):
            for _ in range(2):
                r2.consume(states(check("dns.resolvers", Status.WARNING)))
                clock.tick(700)
    r3 = reporter(dead_server(), clock)
    with caplog.at_level(logging.ERROR, logger="netagent.kubernetes"):
        for _ in range(3):
            r3.consume(states(check("dns.resolvers", Status.WARNING)))
            clock.tick(700)
    messages = [rec.getMessage() for rec in caplog.records if rec.name == "netagent.kubernetes"]
    assert len(messages) == 3, messages
    assert "node node-a is not known to the API server" in messages[0]
    assert "no answer in 1 s" in messages[1]
    assert "connection refused" in messages[2]


def test_conditions_reasons_and_the_default_switch() -> None:
    got = plan.desired([check("neighbour.ipv4", Status.OK), check("neighbour.ipv6",
                                                                  Status.UNKNOWN),
                        check("conntrack.table", Status.OK),
                        check("conntrack.errors", Status.CRITICAL, "drop +25")])
    assert got["NeighbourTablePressure"] == plan.Condition(
        "NeighbourTablePressure", "Unknown", "NeighbourIPv6Unknown", "neighbour.ipv6 is unknown")
    assert got["ConntrackTablePressure"].status == "True"
    assert got["ConntrackTablePressure"].reason == "ConntrackErrorsCritical"
    assert plan.camel("dns.nodelocal") == "DNSNodeLocal"
    # the VXLAN device went away (or the overlay source is down): the single "overlay"
    # check decides the condition, which must not stay as it was last sent
    gone = plan.desired([check("overlay", Status.OK, "no VXLAN device: nothing to check")])
    assert gone["OverlayPeersMissing"] == plan.Condition(
        "OverlayPeersMissing", "False", "OverlayPeersPresent",
        "no VXLAN device: nothing to check")
    down = plan.desired([check("overlay", Status.UNKNOWN, "VXLAN overlay: netlink refused")])
    assert down["OverlayPeersMissing"].status == "Unknown"
    assert down["OverlayPeersMissing"].reason == "OverlayUnknown"
    assert "OverlayPeersMissing" not in plan.desired([check("overlayfs.x", Status.CRITICAL)])
    config = Config()
    assert not enabled(config, {"NODE_NAME": NODE})  # not in a cluster
    assert enabled(config, {"NODE_NAME": NODE, "KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    assert not enabled(config, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"})  # no node name
    assert enabled(Config(kubernetes=KubernetesConfig(report=True)), {})
    assert not enabled(Config(kubernetes=KubernetesConfig(report=False)),
                       {"NODE_NAME": NODE, "KUBERNETES_SERVICE_HOST": "10.96.0.1"})


def test_token_buckets_burst_then_refill() -> None:
    b = plan.TokenBuckets(burst=2, refill_seconds=10)
    assert [b.allow("r", 0.0) for _ in range(3)] == [True, True, False]
    assert not b.allow("r", 5.0) and b.allow("r", 15.1)
    assert b.allow("other", 15.1)  # per key


def scrape(r: KubeReporter) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    from netagent.exporter.collector import StatusCollector
    from netagent.exporter.kubernetes import families

    registry = CollectorRegistry()
    registry.register(StatusCollector(families, r.status))
    return generate_latest(registry).decode()


def test_the_reporters_own_metrics_say_whether_reports_reach_the_node(api: FakeAPI) -> None:
    clock, states = Clock(), States()
    r = reporter(api, clock, event_burst=1)
    assert "netagent_kubernetes_report_up" not in scrape(r)  # nothing tried yet
    for st in (Status.WARNING, Status.OK, Status.WARNING):  # the second warning: over the
        r.consume(states(check("neighbour.ipv4", st)))     # burst of one for its reason
        clock.tick(30)
    text = scrape(r)
    assert "netagent_kubernetes_report_up 1.0" in text
    for operation, count in (("get_node", 1), ("patch_node_status", 3), ("create_event", 2)):
        assert (f'netagent_kubernetes_requests_total{{code="2xx",operation="{operation}"}} '
                f"{count}.0") in text, text
    assert 'netagent_kubernetes_events_dropped_total{reason="rate_limited"} 1.0' in text

    api.fail_writes = (403, status(403, "Forbidden", "cannot patch nodes/status"))
    r.consume(states(check("neighbour.ipv4", Status.OK)))
    text = scrape(r)
    assert "netagent_kubernetes_report_up 0.0" in text
    assert ('netagent_kubernetes_requests_total{code="403",operation="patch_node_status"} 1.0'
            in text)


def test_events_beyond_the_queue_while_the_api_is_down_are_counted() -> None:
    r = reporter(dead_server(), Clock())
    r.consume(States()(check("dns.resolvers", Status.WARNING)))
    for k in range(150):
        r.notify_action("net.netfilter.nf_conntrack_max", "failed", f"EPERM {k}")
    text = scrape(r)
    assert 'netagent_kubernetes_events_dropped_total{reason="queue_full"} 51.0' in text
    assert 'netagent_kubernetes_requests_total{code="none",operation="get_node"} 1.0' in text
    assert "netagent_kubernetes_report_up 0.0" in text
