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

CHECK_KEYS = {"id", "status", "summary", "observed", "limit", "recommendation"}


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
