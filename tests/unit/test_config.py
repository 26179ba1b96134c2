"""Configuration files: defaults, and errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from netagent.config import Config, load
from netagent.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "netagent.yaml"
    path.write_text(text)
    return path


def test_no_file_and_empty_file_give_defaults(tmp_path: Path) -> None:
    assert load(None) == Config()
    assert load(write(tmp_path, "")) == Config()


def test_values_are_read(tmp_path: Path) -> None:
    config = load(write(tmp_path, "interval: 0.5\nnodes: 600\n"
                                  "thresholds:\n  neighbour:\n    warning_ratio: 0.7\n"))
    assert config.interval == 0.5
    assert config.nodes == 600
    assert config.thresholds.neighbour.warning_ratio == 0.7
    assert config.thresholds.neighbour.critical_ratio == 0.95


@pytest.mark.parametrize("text, message", [
    ("intervall: 2\n", "unknown key 'intervall'"),
    ("thresholds:\n  neighbour:\n    warn: 0.7\n", "unknown key 'thresholds.neighbour.warn'"),
    ("interval: fast\n", "'interval' must be a number"),
    ("nodes: 2.5\n", "'nodes' must be an integer"),
    ("nodes: true\n", "'nodes' must be an integer"),
    ("thresholds:\n  neighbour:\n    warning_ratio: 1.5\n",
     "'thresholds.neighbour.warning_ratio' must be between"),
    ("thresholds:\n  neighbour:\n    warning_ratio: 0.96\n",
     "'thresholds.neighbour.warning_ratio' .* must be below"),
    ("thresholds: 3\n", "'thresholds' must be a mapping"),
    ("- a\n- b\n", "the file must be a mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_errors_name_the_key_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.yaml")
