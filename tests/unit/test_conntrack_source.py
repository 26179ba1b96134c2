"""ConntrackSource on recorded proc trees, with the netlink reader injected."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from netagent.errors import SourceError
from netagent.sources.conntrack import ConntrackSource


def _netlink(fixtures: Path, moment: str) -> Any:
    data = json.loads((fixtures / "conntrack" / moment /
                       "pyroute2-conntrack-stat.json").read_text())

    def read() -> Sequence[Mapping[str, Any]]:
        return data
    return read


def _refused() -> Sequence[Mapping[str, Any]]:
    raise SourceError("conntrack statistics over netlink need CAP_NET_ADMIN")


def test_collect_reads_count_limits_and_procfs_stats(fixtures: Path) -> None:
    base = fixtures / "conntrack" / "full"
    source = ConntrackSource(proc_root=str(base / "proc"), netlink=_refused,
                             clock=lambda: 7.0)
    obs = source.collect()
    assert obs.count == int((base / "conntrack-C.txt").read_text())
    assert obs.max == int((base / "proc/sys/net/netfilter/nf_conntrack_max").read_text())
    assert obs.buckets == int(
        (base / "proc/sys/net/netfilter/nf_conntrack_buckets").read_text())
    assert obs.stats is not None and obs.stats.source == "procfs"
    assert obs.kernel.release == (base / "proc/sys/kernel/osrelease").read_text().strip()
    assert obs.monotonic == 7.0
    assert obs.problems == {}


def test_sample_skips_the_limits(fixtures: Path) -> None:
    source = ConntrackSource(proc_root=str(fixtures / "conntrack/full/proc"),
                             netlink=_refused)
    obs = source.sample()
    assert obs.count is not None and obs.stats is not None
    assert obs.max is None and obs.buckets is None


def test_without_the_procfs_file_stats_come_over_netlink(fixtures: Path,
                                                         tmp_path: Path) -> None:
    # A kernel built without CONFIG_NF_CONNTRACK_PROCFS: the same tree minus net/stat.
    shutil.copytree(fixtures / "conntrack/full/proc", tmp_path / "proc")
    shutil.rmtree(tmp_path / "proc/net")
    source = ConntrackSource(proc_root=str(tmp_path / "proc"),
                             netlink=_netlink(fixtures, "full"))
    obs = source.collect()
    assert obs.stats is not None and obs.stats.source == "netlink"
    procfs = ConntrackSource(proc_root=str(fixtures / "conntrack/full/proc"),
                             netlink=_refused).collect().stats
    assert procfs is not None
    for name, value in obs.stats.counters.items():
        assert procfs.get(name) == value


def test_both_stat_paths_failing_leaves_a_reason(fixtures: Path, tmp_path: Path) -> None:
    shutil.copytree(fixtures / "conntrack/full/proc", tmp_path / "proc")
    shutil.rmtree(tmp_path / "proc/net")
    obs = ConntrackSource(proc_root=str(tmp_path / "proc"), netlink=_refused).collect()
    assert obs.stats is None
    assert "does not exist" in obs.problems["stats"]
    assert "CAP_NET_ADMIN" in obs.problems["stats"]
    assert obs.count is not None  # the rest is still read


def test_stats_from_netlink_can_be_forced(fixtures: Path) -> None:
    obs = ConntrackSource(proc_root=str(fixtures / "conntrack/full/proc"),
                          netlink=_netlink(fixtures, "full"), stats_from="netlink").collect()
    assert obs.stats is not None and obs.stats.source == "netlink"
    with pytest.raises(ValueError):
        ConntrackSource(stats_from="sometimes")


def test_missing_module_is_a_clear_source_error(fixtures: Path, tmp_path: Path) -> None:
    shutil.copytree(fixtures / "conntrack/full/proc", tmp_path / "proc")
    shutil.rmtree(tmp_path / "proc/sys/net/netfilter")
    source = ConntrackSource(proc_root=str(tmp_path / "proc"), netlink=_refused)
    with pytest.raises(SourceError, match="nf_conntrack module is not loaded"):
        source.collect()
    with pytest.raises(SourceError, match="not loaded"):
        source.sample()
