"""Per-CPU stat tables: parsed by header name, `entries` taken once, counters summed."""

from __future__ import annotations

import pytest

from netagent.errors import NetagentError
from netagent.parse.procstat import parse_percpu_table


def test_entries_taken_once_and_counters_summed() -> None:
    text = (
        "entries  allocs   destroys table_fulls\n"
        "00000010 00000001 00000002 0000000a\n"
        "00000010 00000003 00000000 00000001\n"
    )
    table = parse_percpu_table(text)
    assert table.entries == 16
    assert table.counters == {"allocs": 4, "destroys": 2, "table_fulls": 11}
    assert table.cpus == 2


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("entries allocs\n", "no per-CPU rows"),
    ("entries allocs\n00000001\n", "line 2 has 1 columns"),
    ("entries allocs\n0000000g 00000001\n", "line 2"),
])
def test_malformed_tables_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(NetagentError, match=message):
        parse_percpu_table(text)
