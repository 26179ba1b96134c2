"""The neighbour source's file reading and namespace discovery, on fake roots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from netagent.sources import netns
from netagent.sources.neighbours import NeighbourSource


def test_stats_and_limits_from_a_captured_proc_tree(fixtures: Path) -> None:
    snapshot = NeighbourSource(proc_root=str(fixtures / "proc")).sample()
    v4 = snapshot.families["ipv4"]
    assert v4.kernel.major >= 5
    assert v4.limits is not None and v4.stats is not None
    assert (v4.limits.gc_thresh1, v4.limits.gc_thresh2, v4.limits.gc_thresh3) == (128, 512, 1024)
    assert v4.limits.gc_interval == 30 and v4.limits.gc_stale_time == 60
    # entries is the same on every CPU row; counters are summed over the rows
    rows = (fixtures / "proc/net/stat/arp_cache").read_text().split("\n")[1:]
    rows = [r.split() for r in rows if r.strip()]
    assert v4.stats.entries == int(rows[0][0], 16)
    assert v4.stats.get("allocs") == sum(int(r[1], 16) for r in rows)
    assert v4.table is None and not v4.problems


def test_missing_files_are_problems_not_errors(tmp_path: Path, fixtures: Path) -> None:
    shutil.copytree(fixtures / "proc", tmp_path / "proc")
    (tmp_path / "proc/net/stat/ndisc_cache").unlink()
    for name in ("gc_thresh1", "gc_thresh2", "gc_thresh3"):
        (tmp_path / "proc/sys/net/ipv6/neigh/default" / name).unlink()
    v6 = NeighbourSource(proc_root=str(tmp_path / "proc")).sample().families["ipv6"]
    assert v6.stats is None and v6.limits is None
    assert "initial network namespace" in v6.problems["stats"]
    assert "gc_thresh1" in v6.problems["limits"]


def test_discovery_deduplicates_by_inode_and_prefers_names(tmp_path: Path) -> None:
    proc, run = tmp_path / "proc", tmp_path / "run-netns"
    for d in ("self/ns", "1/ns", "7/ns", "8/ns", "9/ns"):
        (proc / d).mkdir(parents=True)
    run.mkdir()
    (proc / "self/ns/net").write_text("host")
    os.link(proc / "self/ns/net", proc / "1/ns/net")
    (proc / "7/ns/net").write_text("pod")
    os.link(proc / "7/ns/net", proc / "8/ns/net")
    os.link(proc / "7/ns/net", run / "cni-1234")
    (proc / "9/ns/net").write_text("another pod")
    found = netns.discover(proc_root=str(proc), run_netns=str(run))
    names = [ns.name for ns in found.namespaces]
    assert names == ["host", "cni-1234", "pid:9"]
    assert found.namespaces[0].is_self
    assert found.uninspectable == {}


def test_ipv6_disabled_is_not_a_problem(tmp_path: Path, fixtures: Path) -> None:
    from netagent.checks.neighbours import check_family
    from netagent.config import NeighbourThresholds
    from netagent.model import Status

    shutil.copytree(fixtures / "proc", tmp_path / "proc")
    shutil.rmtree(tmp_path / "proc/sys/net/ipv6")
    v6 = NeighbourSource(proc_root=str(tmp_path / "proc")).sample().families["ipv6"]
    result = check_family(v6, None, NeighbourThresholds())
    assert result.status is Status.OK
    assert "IPv6 is disabled" in result.summary
