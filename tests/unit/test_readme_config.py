"""Every YAML configuration example in the README loads as netagent's configuration: the
docs name no key the code does not know, and no value it refuses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netagent.config import load

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_configuration_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("block", BLOCKS, ids=[b.split(":", 1)[0] for b in BLOCKS])
def test_a_readme_example_is_a_valid_configuration(block: str, tmp_path: Path) -> None:
    path = tmp_path / "netagent.yaml"
    path.write_text(block)
    load(path)  # raises ConfigError naming an unknown key or a bad value
