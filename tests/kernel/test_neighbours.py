"""The neighbour guard on the real kernel, in lab namespaces.

The IPv4 neighbour limits are global: the fill tests pin gc_thresh1/2/3 to the kernel
defaults, hold the table high for a few seconds only, and always restore and clean up.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from labkit.netlab import Lab, sh, sysctls

from netagent.sources.neighbours import NeighbourSource
from tests.kernel.helpers import check, netagent

DEFAULTS = {
    "net.ipv4.neigh.default.gc_thresh1": "128",
    "net.ipv4.neigh.default.gc_thresh2": "512",
    "net.ipv4.neigh.default.gc_thresh3": "1024",
}
GC_THRESH3 = 1024


@pytest.fixture
def lab() -> Iterator[Lab]:
    the_lab = Lab(f"nb{os.getpid() % 10000}")
    try:
        yield the_lab.up(pods=2)
    finally:
        the_lab.down()
    assert the_lab.namespaces() == []


@pytest.fixture
def default_limits() -> Iterator[None]:
    with sysctls(DEFAULTS):
        yield


def ip_counts(ns: str, family: str) -> dict[str, int]:
    out = sh(["ip", "-n", ns, "-4" if family == "ipv4" else "-6", "neigh", "show", "nud",
              "all"]).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        state = line.split()[-1].lower()
        counts[state] = counts.get(state, 0) + 1
    return counts


def counted_elsewhere(lab: Lab) -> int:
    """Counted IPv4 entries outside this lab (the host, other tests' namespaces)."""
    table = NeighbourSource(families=("ipv4",)).collect().families["ipv4"].table
    assert table is not None
    return sum(ns.counted for ns in table.namespaces if not ns.namespace.startswith(
        f"nalab-{lab.name}-"))


def test_entries_are_counted_exactly_per_state_and_device(lab: Lab) -> None:
    lab.add_neighbours(30, dev="vpod0", state="stale")
    lab.add_neighbours(20, dev="vpod1", state="reachable", start=30)
    lab.add_neighbours(5, dev="vpod0", state="permanent", start=50)
    lab.add_neighbours(3, ns=lab.pod(0), dev="eth0", state="stale", start=60)
    lab.add_neighbours(7, dev="vpod1", state="stale", family="ipv6")

    # The kernel adds entries of its own, asynchronously (IPv6 NOARP multicast entries after
    # a link comes up): the oracle is read before and after netagent's dump, and the two
    # must agree, so that nothing the kernel added in between is blamed on netagent.
    def oracle() -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        return (ip_counts(lab.node, "ipv4"), ip_counts(lab.pod(0), "ipv4"),
                ip_counts(lab.node, "ipv6"))

    deadline = time.monotonic() + 10
    for _ in range(20):
        before = oracle()
        snapshot = NeighbourSource().collect()
        if oracle() == before or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert oracle() == before, "the lab's tables did not settle in 10 s"
    expected, expected_pod, expected6 = before
    v4, v6 = snapshot.families["ipv4"].table, snapshot.families["ipv6"].table
    assert v4 is not None and v6 is not None
    node = {ns.namespace: ns for ns in v4.namespaces}[lab.node]
    pod = {ns.namespace: ns for ns in v4.namespaces}[lab.pod(0)]

    assert node.by_state == expected
    assert expected["stale"] == 30 and expected["reachable"] == 20
    assert expected["permanent"] == 5
    assert node.by_device["vpod0"] == 35
    assert node.by_device["vpod1"] == sum(expected.values()) - 35
    assert node.total == sum(expected.values())
    # Linux >= 5.0: PERMANENT entries do not count against gc_thresh3
    assert node.counted == node.total - 5
    # just added (updated < 5 s ago) or referenced: forced GC could not free any of them
    assert node.unreclaimable == node.counted - node.by_state.get("noarp", 0) \
        - node.by_state.get("failed", 0)
    assert pod.by_device["eth0"] == sum(expected_pod.values())
    assert pod.by_state.get("stale") == 3

    node6 = {ns.namespace: ns for ns in v6.namespaces}[lab.node]
    assert node6.by_state == expected6
    assert node6.by_state["stale"] == 7


def test_lab_namespaces_are_in_the_report(lab: Lab) -> None:
    lab.add_neighbours(40, dev="vpod0", state="stale")
    code, report, err = netagent(["check", "--json", "--only", "neighbours",
                                  "--interval", "0"])
    assert isinstance(report, dict), err
    v4 = check(report, "neighbour.ipv4")
    assert v4["evidence"]["exact"] is True
    assert v4["evidence"]["top_devices"][f"{lab.node}/vpod0"] == 40
    assert v4["evidence"]["namespaces_scanned"] >= 4  # host, node, two pods
    assert report["sources"][0]["ok"] is True
    assert code == {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}[report["status"]]


def test_filling_to_85_percent_warns(lab: Lab, default_limits: None) -> None:
    target = int(0.85 * GC_THRESH3)
    added, refused = lab.add_neighbours(target - counted_elsewhere(lab), state="stale")
    assert refused == 0
    code, report, err = netagent(["check", "--json", "--only", "neighbours",
                                  "--interval", "0"])
    assert isinstance(report, dict), err
    v4 = check(report, "neighbour.ipv4")
    assert v4["status"] == "warning", v4["summary"]
    assert code == 1
    assert 0.80 <= v4["observed"] / GC_THRESH3 < 0.95
    assert v4["limit"] == GC_THRESH3
    targets = {c["key"]: c["target"] for c in v4["changes"] if c["kind"] == "sysctl"}
    assert targets["net.ipv4.neigh.default.gc_thresh3"] == 2048
    # Entries updated in the last 5 s cannot be freed by forced GC: nearly all of those just
    # added (a loaded machine may take a second or two to get here, never five).
    evidence = v4["evidence"]
    assert evidence["unreclaimable"] + evidence["reclaimable"] == v4["observed"]
    assert evidence["unreclaimable"] >= 0.9 * added

    # Without privileges the namespaces cannot be entered: the check says so, not guesses.
    code, report, err = netagent(["check", "--json", "--only", "neighbours",
                                  "--interval", "0"], unprivileged=True)
    assert isinstance(report, dict), err
    v4 = check(report, "neighbour.ipv4")
    assert v4["status"] == "unknown", v4["summary"]
    assert code == 3
    assert "cannot tell" in v4["summary"]
    assert v4["evidence"]["namespaces_unreadable"] >= 1
    # Nothing adds entries to the lab, so its count afterwards is a floor for the count the
    # check saw; entries elsewhere (the host's) may expire meanwhile, so `target` is not.
    assert v4["observed"]["at_most"] >= lab.count_neighbours()


def test_overflowing_gc_thresh3_is_critical(lab: Lab, default_limits: None) -> None:
    _added, refused = lab.add_neighbours(GC_THRESH3 + 50 - counted_elsewhere(lab),
                                        state="stale")
    assert refused > 0, "the kernel should refuse entries beyond gc_thresh3"

    # Keep asking for new entries while netagent samples twice, as real traffic would.
    stop = threading.Event()

    def keep_adding() -> None:
        start = 100_000
        for i in range(200):  # bounded: at most 200 attempts, stops with the check
            if stop.is_set():
                return
            lab.add_neighbours(5, state="stale", start=start + 5 * i)
            time.sleep(0.02)

    adder = threading.Thread(target=keep_adding, daemon=True)
    adder.start()
    try:
        code, report, err = netagent(["check", "--json", "--only", "neighbours",
                                      "--interval", "1"])
    finally:
        stop.set()
        adder.join(timeout=30)
    assert isinstance(report, dict), err
    v4 = check(report, "neighbour.ipv4")
    assert v4["status"] == "critical", v4["summary"]
    assert code == 2
    assert v4["observed"] >= int(0.95 * GC_THRESH3)
    assert v4["evidence"]["table_fulls_during_check"] > 0
    assert "refused" in v4["summary"]


def test_no_neighbour_limits_inside_a_pod_namespace(lab: Lab) -> None:
    """In a non-initial namespace the limits and stats do not exist: unknown, with why."""
    code, report, err = netagent(["check", "--json", "--only", "neighbours",
                                  "--interval", "0"], netns=lab.pod(0))
    assert isinstance(report, dict), err
    v4 = check(report, "neighbour.ipv4")
    assert v4["status"] == "unknown"
    assert "initial network namespace" in v4["summary"]
    assert code == 3


def test_cleanup_leaves_nothing_behind() -> None:
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "nalab-nb" not in left
