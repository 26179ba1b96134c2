"""Conntrack statistics from procfs and netlink, checked against conntrack(8) of the same moment.

The fixtures (tests/fixtures/conntrack, see its README) hold /proc files, ``conntrack -S``
and ``-C`` output and pyroute2's answers recorded together, so every parser is compared with
an independent reading of the same kernel counters.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from labkit.conntrack import sum_stats_lines

from netagent.errors import NetagentError
from netagent.model import KernelVersion
from netagent.parse.conntrack import (
    RACE_FIXES,
    dns_race_fixes,
    parse_netlink_stats,
    parse_proc_stats,
)
from netagent.parse.kernel import parse_release

MOMENTS = ("before", "full", "current")


def _dir(fixtures: Path, moment: str) -> Path:
    return fixtures / "conntrack" / moment


def _conntrack_s(fixtures: Path, moment: str) -> dict[str, int]:
    return sum_stats_lines((_dir(fixtures, moment) / "conntrack-S.txt").read_text())


@pytest.mark.parametrize("moment", MOMENTS)
def test_procfs_matches_conntrack_tool(fixtures: Path, moment: str) -> None:
    base = _dir(fixtures, moment)
    stats = parse_proc_stats((base / "proc/net/stat/nf_conntrack").read_text())
    assert stats.source == "procfs"
    assert stats.layout == "current"
    assert stats.cpus == 2
    assert stats.entries == int((base / "conntrack-C.txt").read_text())
    tool = _conntrack_s(fixtures, moment)
    # conntrack -S prints exactly the netlink counters, under the canonical names
    assert set(tool) <= set(stats.counters)
    for name, value in tool.items():
        assert stats.get(name) == value, name


def test_renamed_columns_take_their_netlink_names(fixtures: Path) -> None:
    stats = parse_proc_stats(
        (_dir(fixtures, "full") / "proc/net/stat/nf_conntrack").read_text())
    for old in ("clashres", "chainlength", "icmp_error"):
        assert old not in stats.counters
    assert {"clash_resolve", "chaintoolong", "error"} <= set(stats.counters)
    assert stats.get("drop") == 25  # the 25 datagrams record.py sent into the full table


@pytest.mark.parametrize("moment", MOMENTS)
def test_pyroute2_forms_match_conntrack_tool(fixtures: Path, moment: str) -> None:
    base = _dir(fixtures, moment)
    flat = parse_netlink_stats(json.loads((base / "pyroute2-conntrack-stat.json").read_text()))
    raw = parse_netlink_stats(
        json.loads((base / "pyroute2-nfctsocket-stat.json").read_text()))
    assert flat == raw
    assert flat.source == "netlink" and flat.entries is None and flat.cpus == 2
    assert dict(flat.counters) == _conntrack_s(fixtures, moment)


def test_procfs_and_netlink_agree_on_shared_counters(fixtures: Path) -> None:
    base = _dir(fixtures, "full")
    proc = parse_proc_stats((base / "proc/net/stat/nf_conntrack").read_text())
    netlink = parse_netlink_stats(
        json.loads((base / "pyroute2-conntrack-stat.json").read_text()))
    for name, value in netlink.counters.items():
        assert proc.get(name) == value, name


def test_legacy_header_keeps_legacy_names(fixtures: Path) -> None:
    text = (fixtures / "conntrack/legacy/proc/net/stat/nf_conntrack").read_text()
    stats = parse_proc_stats(text)
    assert stats.layout == "legacy"
    assert stats.entries == 0x85  # global gauge repeated on each row: taken once
    assert stats.get("searched") == 0x3e40 + 0xc5f
    assert stats.get("found") == 0x7782a9 + 0x53a15
    assert stats.get("delete_list") == 0x67e99 + 0x69c9
    assert stats.get("expect_create") == 0x1 + 0xf
    assert stats.get("error") == 0  # icmp_error
    # searched/delete_list are not the counters that later took their columns
    assert stats.get("clash_resolve") is None
    assert stats.get("chaintoolong") is None


def test_clashres_with_delete_list_header_is_recognised() -> None:
    # The header of kernels between the two renames (net/netfilter/nf_conntrack_standalone.c
    # after bc92470413f3, before chaintoolong): one CPU row, edge case only.
    text = ("entries  clashres found new invalid ignore delete delete_list insert "
            "insert_failed drop early_drop icmp_error  expect_new expect_create "
            "expect_delete search_restart\n"
            "00000010  00000007 00000000 00000000 00000000 00000000 00000000 00000000 "
            "00000000 00000002 00000000 00000000 00000000  00000000 00000000 00000000 "
            "00000000\n")
    stats = parse_proc_stats(text)
    assert stats.layout == "clashres"
    assert stats.get("clash_resolve") == 7
    assert stats.get("delete_list") == 0
    assert stats.get("chaintoolong") is None


@pytest.mark.parametrize("messages, message", [
    ([], "no per-CPU message"),
    ([{"cpu": 0, "drop": -1}], "not a counter"),
    ([{"cpu": 0, "drop": "3"}], "not a counter"),
])
def test_bad_netlink_answers_name_the_problem(messages: list[dict[str, object]],
                                              message: str) -> None:
    with pytest.raises(NetagentError, match=message):
        parse_netlink_stats(messages)


def test_procfs_without_entries_column_is_an_error() -> None:
    with pytest.raises(NetagentError, match="no 'entries' column"):
        parse_proc_stats("found drop\n00000001 00000002\n")


@pytest.mark.parametrize("release, present", [
    ("3.10.0-1160.el7.x86_64", (False, False, False)),
    ("4.14.105", (False, False, False)),
    ("4.14.106", (True, True, False)),  # both 2019 fixes were backported to 4.14.106
    ("4.19.0", (True, False, False)),
    ("4.19.29", (True, True, False)),
    ("5.0.0", (True, True, False)),
    ("5.4.0-150-generic", (True, True, False)),
    ("5.6.0", (True, True, True)),
])
def test_dns_race_fixes_by_kernel_version(release: str,
                                          present: tuple[bool, bool, bool]) -> None:
    fixes = dns_race_fixes(parse_release(release))
    assert tuple(f.fix.commit for f in fixes) == tuple(f.commit for f in RACE_FIXES)
    assert tuple(f.present for f in fixes) == present
    for f in fixes:
        assert f.fix.commit in f.describe() or f.present


def test_running_kernel_of_the_fixtures_has_every_fix(fixtures: Path) -> None:
    release = (_dir(fixtures, "current") / "proc/sys/kernel/osrelease").read_text()
    kernel: KernelVersion = parse_release(release)
    assert all(f.present for f in dns_race_fixes(kernel))
