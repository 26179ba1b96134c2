"""What remediation needs to know about the node: the managed keys' current values, the
keys the administrator's sysctl files set, the memory, and netagent's own journal.

What a person would type: ``sysctl net.ipv4.neigh.default.gc_thresh3``,
``grep -r gc_thresh /etc/sysctl.d /etc/sysctl.conf``, ``cat /var/lib/netagent/journal.json``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from netagent.config import HASHSIZE, MANAGED_KEYS, PERSIST_FILE, RemediationConfig
from netagent.errors import ParseError, SourceError
from netagent.loaders import LoadError, read_text
from netagent.model import Journal, NodeFacts
from netagent.parse.journal import parse_journal
from netagent.parse.sysctl import keys_set

JOURNAL = "journal.json"


def sysctl_path(root: Path, key: str) -> Path:
    """``net.ipv4.neigh.default.gc_thresh3`` under ``root`` (``/proc/sys``)."""
    return root.joinpath(*key.split("."))


def key_path(r: RemediationConfig, key: str) -> Path:
    """Where a managed key lives: under sysctl_root, or the module parameter's file."""
    if key == HASHSIZE:
        return Path(r.module_root, "nf_conntrack", "parameters", "hashsize")
    return sysctl_path(Path(r.sysctl_root), key)


def read_int(path: Path) -> int:
    """The number a sysctl or module parameter file holds; ``OSError`` or ``ValueError``."""
    with open(path) as f:
        words = f.read().split()
    if not words:
        raise ValueError(f"{path} is empty")
    return int(words[0])


def read_value(path: Path) -> int | None:
    """``read_int``, or None when the file is absent or holds no number."""
    try:
        return read_int(path)
    except (OSError, ValueError):
        return None


def admin_files(r: RemediationConfig) -> list[Path]:
    """The sysctl files an administrator writes, netagent's own excepted, in the order
    ``sysctl --system`` reads them."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        found = sorted(p for p in Path(r.persist_dir).glob("*.conf")
                       if p.name != PERSIST_FILE)
    conf = Path(r.sysctl_conf)
    return [*found, conf] if conf.is_file() else found


def read_facts(r: RemediationConfig, *, now: float) -> NodeFacts:
    values = {key: read_value(key_path(r, key)) for key in MANAGED_KEYS}
    set_in: dict[str, str] = {}
    for path in admin_files(r):
        try:
            text = read_text(path, what="sysctl file", errors="replace")
        except (OSError, LoadError):
            continue
        for key in keys_set(text):
            if key in MANAGED_KEYS:
                set_in[key] = str(path)
    return NodeFacts(values=values, set_in_files=set_in, mem_total_bytes=mem_total(),
                 hashsize_writable=os.access(key_path(r, HASHSIZE), os.W_OK), now=now)


def mem_total(meminfo: str = "/proc/meminfo") -> int | None:
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_journal(r: RemediationConfig) -> Journal:
    """netagent's journal; empty when there is none yet. A journal that cannot be read is
    an error: acting without it could lose the original values rollback needs."""
    path = Path(r.state_dir, JOURNAL)
    try:
        return parse_journal(read_text(path, what="journal"))
    except FileNotFoundError:
        return Journal()
    except (LoadError, ParseError) as err:
        raise SourceError(f"{path}: {err}") from err
