"""`netagent check`: exit codes, the JSON contract, options and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from netagent import cli, wiring
from netagent.errors import SourceError
from netagent.model import NeighbourSnapshot
from tests.unit.test_neighbour_checks import observation

CHECK_KEYS = {"id", "status", "summary", "observed", "limit", "recommendation", "changes"}


class FakeNeighbours:
    name = "neighbours"

    def __init__(self, counted: int, *, fail: bool = False) -> None:
        self.counted, self.fail = counted, fail

    def sample(self) -> NeighbourSnapshot:
        return self.collect()

    def collect(self) -> NeighbourSnapshot:
        if self.fail:
            raise SourceError("cannot open a netlink socket: Operation not permitted")
        return NeighbourSnapshot({"ipv4": observation(self.counted)})


@pytest.fixture
def use_source(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(source: FakeNeighbours) -> None:
        monkeypatch.setattr(wiring, "build_sources",
                            lambda config, only=(): {"neighbours": source})
    return install


@pytest.mark.parametrize("counted, code, status", [
    (100, 0, "ok"), (850, 1, "warning"), (1000, 2, "critical"),
])
def test_exit_code_and_json_follow_the_worst_check(use_source: Any, counted: int, code: int,
                                                   status: str) -> None:
    use_source(FakeNeighbours(counted))
    result = CliRunner().invoke(cli.cli, ["check", "--json", "--interval", "0"])
    assert result.exit_code == code, result.output
    data = json.loads(result.output)
    assert set(data) == {"node", "kernel", "status", "checks", "sources"}
    assert data["status"] == status
    (check,) = data["checks"]
    assert set(check) >= CHECK_KEYS
    assert check["id"] == "neighbour.ipv4" and check["status"] == status
    assert check["observed"] == counted and check["limit"] == 1024
    (source,) = data["sources"]
    assert set(source) == {"name", "ok", "duration_seconds", "error"}
    assert source["ok"] is True and source["error"] is None


def test_failed_source_is_unknown_not_a_crash(use_source: Any) -> None:
    use_source(FakeNeighbours(0, fail=True))
    result = CliRunner().invoke(cli.cli, ["check", "--json", "--interval", "0"])
    assert result.exit_code == 3
    data = json.loads(result.output)
    assert data["status"] == "unknown"
    assert {c["status"] for c in data["checks"]} == {"unknown"}
    assert data["sources"][0]["ok"] is False
    assert "Operation not permitted" in data["sources"][0]["error"]


def test_text_report(use_source: Any) -> None:
    use_source(FakeNeighbours(850))
    result = CliRunner().invoke(cli.cli, ["check", "--interval", "0"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].endswith("WARNING")
    assert "WARNING  neighbour.ipv4" in lines[1]
    assert "fix: Raise the thresholds" in result.output
    assert "\033[" not in result.output  # no colour when stdout is not a terminal
    verbose = CliRunner().invoke(cli.cli, ["check", "--interval", "0", "-v"])
    assert "gc_thresh2: 512" in verbose.output
    assert "sources:" in verbose.output


def test_interval_takes_two_samples(use_source: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    use_source(FakeNeighbours(100))
    result = CliRunner().invoke(cli.cli, ["check", "--json", "--interval", "1.5"])
    assert result.exit_code == 0
    assert slept == [1.5]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.err


@pytest.mark.parametrize("argv, message", [
    (["check", "--only", "arp"], "Invalid value for '--only'"),
    (["check", "--interval", "-1"], "Invalid value for '--interval'"),
    (["check", "--bogus"], "No such option '--bogus'"),
    (["frobnicate"], "No such command 'frobnicate'"),
])
def test_usage_errors_exit_3_with_one_line(argv: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(argv, capsys)
    assert code == 3
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_config_error_exits_3_naming_key_and_file(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("thresholds:\n  neighbour:\n    critical_ratio: 2\n")
    code, err = run_main(["check", "--config", str(path)], capsys)
    assert code == 3
    assert str(path) in err and "thresholds.neighbour.critical_ratio" in err
    assert len(err.strip().splitlines()) == 1


def test_options_from_the_environment(use_source: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    monkeypatch.setenv("NETAGENT_CHECK_INTERVAL", "0.25")
    use_source(FakeNeighbours(100))
    with pytest.raises(SystemExit) as info:
        cli.main(["check", "--json"])
    assert info.value.code == 0
    assert slept == [0.25]


# --- hardening: hostile files and options, each once a traceback or a hang ---------------

def _bomb() -> str:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\nnodes: *i\n"


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe\x00binary\x00", "not UTF-8 text"),
    (_bomb().encode(), "aliases (*a) are not allowed"),
    (b"nodes: 3\nnodes: 4\n", "duplicate key 'nodes'"),
    (b"interval: 2:30\n", "'interval' must be a number, not '2:30'"),
    (b"agent:\n  listen: 0.0.0.0:99999\n", "'agent.listen'"),
    (b"agent:\n  listen: nowhere:80\n", "'agent.listen'"),
    (b"dns:\n  names: [a..b]\n", "'dns.names': 'a..b' is not a DNS name"),
    (b"dns:\n  names: [" + b"x" * 300 + b".com]\n", "'dns.names'"),
    (b"interval: .nan\n", "'interval' must be between"),
    (b"nodes: " + b"9" * 400 + b"\n", "integer too long"),
])
def test_hostile_config_files_exit_3_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    path = tmp_path / "netagent.yaml"
    path.write_bytes(content)
    code, err = run_main(["check", "--config", str(path)], capsys)
    assert code == 3, err
    assert message in err and str(path) in err
    assert len(err.strip().splitlines()) == 1
    assert len(err) < 400  # values are shortened, never printed whole


def test_a_long_bad_value_is_shortened_in_the_message(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "netagent.yaml"
    path.write_text("interval: " + "y" * 100_000 + "\n")
    code, err = run_main(["check", "--config", str(path)], capsys)
    assert code == 3 and "..." in err and len(err) < 300


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "directory"])
def test_config_that_is_not_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           special: str) -> None:
    import os

    if special == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    elif special == "directory":
        path = str(tmp_path)
    else:
        path = special
    option = "--config" if special != "directory" else "--kubeconfig"
    code, err = run_main(["check", option, path, "--only", "cluster", "--interval", "0"],
                         capsys)
    assert code == 3
    assert "not a regular file" in err or "Invalid value" in err
    assert len(err.strip().splitlines()) == 1


def test_a_kubeconfig_fifo_does_not_block(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import os

    path = tmp_path / "kubeconfig"
    os.mkfifo(path)
    code, err = run_main(["check", "--kubeconfig", str(path), "--only", "cluster",
                          "--interval", "0"], capsys)
    assert code == 3 and "not a regular file" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kubeconfig, message", [
    (b"\x80\x81 not utf-8", "not UTF-8"),
    (b"current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n"
     b"clusters:\n- name: k\n  cluster: {server: 'https://127.0.0.1:99999'}\n",
     "not a valid URL"),
    (b"current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n"
     b"clusters:\n- name: k\n  cluster: {server: 'https://h:abc'}\n", "not a valid URL"),
    (b"current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n"
     b"clusters:\n- name: k\n  cluster: {server: 'http://[::1'}\n", "not a valid URL"),
    (b"current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n"
     b"clusters:\n- name: k\n  cluster: {server: 'https://h'}\n"
     b'users:\n- name: u\n  user: {token: "a\\r\\nb"}\n', "'token' holds control"),
    (b"current-context: c\ncontexts:\n- name: c\n  context: {cluster: [k]}\n",
     "'cluster' must be a name"),
])
def test_bad_kubeconfigs_exit_3_with_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              kubeconfig: bytes, message: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_bytes(kubeconfig)
    code, err = run_main(["check", "--kubeconfig", str(path), "--only", "cluster",
                          "--interval", "0"], capsys)
    assert code == 3, err
    assert message in err and str(path) in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["check", "--interval", "nan"], "Invalid value for '--interval'"),
    (["check", "--nodes", "9" * 400], "Invalid value for '--nodes'"),
    (["check", "--nodes", "1000001"], "Invalid value for '--nodes'"),
])
def test_numeric_options_are_bounded(argv: list[str], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(argv, capsys)
    assert code == 3 and message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("variable", ["NETAGENT_CHECK_CONFIG", "NETAGENT_CONFIG"])
def test_the_config_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str],
                                              variable: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("bogus: 1\n")
    monkeypatch.setenv(variable, str(path))
    code, err = run_main(["check"], capsys)
    assert code == 3 and "unknown key 'bogus'" in err
