"""The executor's writes: verified, atomic, and every failure an outcome with its reason."""

from __future__ import annotations

import os
from pathlib import Path

from netagent.remediation import executor
from netagent.sources.sysctl import sysctl_path


def sysctl_tree(tmp_path: Path, key: str, value: str) -> Path:
    path = sysctl_path(tmp_path, key)
    path.parent.mkdir(parents=True)
    path.write_text(value)
    return path


def test_write_and_verify(tmp_path: Path) -> None:
    key = "net.ipv4.neigh.default.gc_thresh3"
    path = sysctl_tree(tmp_path, key, "1024\n")
    assert path == tmp_path / "net/ipv4/neigh/default/gc_thresh3"
    outcome = executor.write_value(path, 2048, key=key)
    assert (outcome.result, outcome.before, outcome.after) == ("applied", 1024, 2048)
    assert path.read_text() == "2048\n"


def test_a_key_the_kernel_lacks_is_never_created(tmp_path: Path) -> None:
    path = sysctl_path(tmp_path, "net.ipv4.neigh.default.gc_thresh9")
    outcome = executor.write_value(path, 5, key="net.ipv4.neigh.default.gc_thresh9")
    assert outcome.result == "failed" and outcome.reason.endswith("no such key on this kernel")
    assert not path.exists()


def test_a_file_that_does_not_hold_a_number(tmp_path: Path) -> None:
    path = sysctl_tree(tmp_path, "net.core.somaxconn", "")
    outcome = executor.write_value(path, 5, key="net.core.somaxconn")
    assert (outcome.result, outcome.reason) == ("failed", f"{path} does not hold a number")
    assert path.read_text() == ""


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("1\n")
    link = tmp_path / "net" / "key"
    link.parent.mkdir()
    link.symlink_to(target)
    outcome = executor.write_value(link, 7, key="net.key")
    assert outcome.result == "failed" and target.read_text() == "1\n"


def test_files_are_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "90-netagent.conf"
    path.write_text("old\n")
    assert executor.write_file_atomically(path, "new\n") is None
    assert path.read_text() == "new\n"
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["90-netagent.conf"]  # no temp left
    missing = tmp_path / "no-such-dir" / "journal.json"
    reason = executor.write_file_atomically(missing, "x")
    assert reason is not None and "no-such-dir" in reason
    assert executor.remove_file(path) is None and not path.exists()
    assert executor.remove_file(path) is None  # already gone
