"""``/proc/net/stat/*`` tables: a header line, then one row of hex counters per CPU.

Used for ``arp_cache``, ``ndisc_cache`` and ``nf_conntrack``. Columns are found by header
name because they differ between kernels (``searched`` became ``clashres``, ``delete_list``
became ``chainlength`` in nf_conntrack). ``entries`` is a global gauge repeated on every row
(``neigh_stat_seq_show`` and ``ct_cpu_seq_show`` print the table-wide count), so it is taken
once; every other column is a per-CPU counter and is summed.
"""

from __future__ import annotations

from dataclasses import dataclass

from netagent.errors import ParseError


@dataclass(frozen=True)
class PerCpuTable:
    entries: int | None
    counters: dict[str, int]
    cpus: int


def parse_percpu_table(text: str, *, source: str = "stat file") -> PerCpuTable:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ParseError(f"{source}: empty")
    header, rows = lines[0], lines[1:]
    if not rows:
        raise ParseError(f"{source}: header but no per-CPU rows")
    sums = dict.fromkeys(header, 0)
    entries: int | None = None
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ParseError(
                f"{source}: line {number} has {len(row)} columns, header has {len(header)}"
            )
        try:
            values = [int(cell, 16) for cell in row]
        except ValueError as err:
            raise ParseError(f"{source}: line {number}: {err}") from err
        for name, value in zip(header, values, strict=True):
            if name == "entries":
                entries = value
            else:
                sums[name] += value
    sums.pop("entries", None)
    return PerCpuTable(entries=entries, counters=sums, cpus=len(rows))
