"""The only code in netagent that writes to the system (import-linter keeps it so).

Each write is verified by reading the value back, and every failure is an ``Outcome`` with
its reason, never an exception: a read-only mount (EROFS), no permission (EACCES/EPERM, e.g.
``nf_conntrack_max`` outside the initial network namespace), a key this kernel does not
have, a value the kernel refuses, a full disk. Files netagent keeps (the persisted sysctls,
its journal) are written atomically: a temporary file in the same directory, fsync, rename,
fsync of the directory, so a crash leaves the old file or the new one, never half of one.
What a person would type for a write: ``sysctl -w KEY=VALUE``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netagent.config import PERSIST_FILE, RemediationConfig
from netagent.model import ActionRecord, Journal, KeyRecord
from netagent.remediation.journal import journal_text, persisted_text, with_actions
from netagent.remediation.plan import Plan
from netagent.sources import program
from netagent.sources.sysctl import JOURNAL, key_path, read_int, read_value

Runner = Callable[..., Any]

# errno -> what the outcome says
_REASONS = {
    errno.EROFS: "read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "no such key on this kernel",
    errno.EINVAL: "the kernel refused the value",
    errno.ENOSPC: "no space left on device",
}


@dataclass(frozen=True)
class Outcome:
    """What one write did: ``applied`` (verified by reading back) or ``failed``."""

    key: str
    target: int
    before: int | None
    after: int | None
    result: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "applied"


def write_value(path: Path, value: int, *, key: str) -> Outcome:
    """Write ``value`` to an existing file of the kernel's (a sysctl or a module parameter)
    and read it back. The file is never created: a key missing under a sysctl root is a
    key this kernel lacks (or the wrong root), not something to make."""
    try:
        before = read_int(path)
    except OSError as err:
        return Outcome(key, value, None, None, "failed", _reason(err, path))
    except ValueError:
        return Outcome(key, value, None, None, "failed", f"{path} does not hold a number")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.write(fd, f"{value}\n".encode())
        finally:
            os.close(fd)
        after = read_int(path)
    except OSError as err:
        return Outcome(key, value, before, None, "failed", _reason(err, path))
    except ValueError:
        return Outcome(key, value, before, None, "failed", f"{path} does not hold a number")
    if after != value:
        return Outcome(key, value, before, after, "failed",
                       f"wrote {value}, reads back {after}")
    return Outcome(key, value, before, after, "applied")


def write_file_atomically(path: Path, text: str, *, mode: int = 0o644) -> str | None:
    """Replace ``path`` with ``text``; None when done, else why not."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as err:
        return _reason(err, path)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return None


def remove_file(path: Path) -> str | None:
    """Remove ``path`` if it exists; None when it is gone, else why not."""
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as err:
        return _reason(err, path)
    return None


def _reason(err: OSError, path: Path) -> str:
    what = _REASONS.get(err.errno or 0) or os.strerror(err.errno or errno.EIO)
    return f"{path}: {what}"


# --- carrying out a plan ----------------------------------------------------------------------

NFT_TABLE = "netagent"
NFT = "nft"


def apply(plan: Plan, journal: Journal, r: RemediationConfig, *, now: float, version: str,
          run: Runner = subprocess.run) -> tuple[list[Outcome], Journal]:
    """Carry out ``plan``: write each value and verify it, restore or remove the NOTRACK
    table, then persist the managed values and the journal. Returns the outcomes and the
    journal as written."""
    outcomes: list[Outcome] = []
    keys = dict(journal.keys)
    released = dict(journal.released)
    records: list[ActionRecord] = []
    for e in plan.elsewhere:
        if e.new:
            released[e.key] = e.why
            keys.pop(e.key, None)  # the administrator's now: rollback leaves it alone
    for a in plan.actions:
        outcome = write_value(key_path(r, a.key), a.target, key=a.key)
        outcomes.append(outcome)
        records.append(ActionRecord(now, a.key, outcome.before, a.target, outcome.result,
                                    outcome.reason or a.reason))
        if outcome.ok:
            before = keys.get(a.key)
            keys[a.key] = KeyRecord(original=before.original if before else outcome.before,
                                    written=a.target, at=now)
    notrack = journal.notrack
    for n in plan.notrack:
        outcome = (nft_restore(n.address, run=run) if n.add else nft_remove(run=run))
        outcomes.append(outcome)
        records.append(ActionRecord(now, outcome.key, None, outcome.target, outcome.result,
                                    outcome.reason or n.reason))
        if outcome.ok:
            notrack = n.address if n.add else None
    written = with_actions(Journal(keys=keys, released=released, notrack=notrack,
                                   actions=journal.actions), *records)
    outcomes.extend(_save(written, r, version=version, now=now))
    return outcomes, written


def rollback(journal: Journal, r: RemediationConfig, *, now: float, version: str,
             run: Runner = subprocess.run) -> tuple[list[Outcome], Journal]:
    """Restore every original value netagent wrote over (a key changed since by someone
    else is theirs and left alone), remove the NOTRACK table and the persisted file."""
    outcomes: list[Outcome] = []
    records: list[ActionRecord] = []
    for key, record in sorted(journal.keys.items()):
        path = key_path(r, key)
        current = read_value(path)
        if record.original is None:
            continue
        if current != record.written:
            outcomes.append(Outcome(key, record.original, current, current, "skipped",
                                    f"left alone: {current} since netagent wrote "
                                    f"{record.written}"))
            continue
        outcome = write_value(path, record.original, key=key)
        outcomes.append(outcome)
        records.append(ActionRecord(now, key, outcome.before, record.original,
                                    outcome.result, outcome.reason or "rollback"))
    if journal.notrack:
        outcomes.append(nft_remove(run=run))
    persisted = Path(r.persist_dir, PERSIST_FILE)
    if persisted.exists():
        reason = remove_file(persisted)
        outcomes.append(Outcome(str(persisted), 0, None, None,
                                "failed" if reason else "applied", reason or "removed"))
    failed = {o.key for o in outcomes if o.result == "failed"}
    # What could not be restored stays in the journal, so that a later rollback retries it.
    left = Journal(keys={k: v for k, v in journal.keys.items() if k in failed},
                   notrack=journal.notrack if f"nftables:{NFT_TABLE}" in failed else None,
                   actions=journal.actions)
    left = with_actions(left, *records)
    outcomes.extend(_save(left, r, version=version, now=now, persist=False))
    return outcomes, left


def _save(journal: Journal, r: RemediationConfig, *, version: str, now: float,
          persist: bool = True) -> list[Outcome]:
    outcomes = []
    if persist and any(k.startswith("net.") for k in journal.keys):
        path = Path(r.persist_dir, PERSIST_FILE)
        reason = write_file_atomically(path, persisted_text(journal, version=version))
        if reason:
            outcomes.append(Outcome(str(path), 0, None, None, "failed", reason))
    state = Path(r.state_dir)
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        outcomes.append(Outcome(str(state / JOURNAL), 0, None, None, "failed",
                                _reason(err, state)))
        return outcomes
    reason = write_file_atomically(state / JOURNAL, journal_text(journal), mode=0o600)
    if reason:
        outcomes.append(Outcome(str(state / JOURNAL), 0, None, None, "failed", reason))
    return outcomes


def notrack_ruleset(address: str) -> str:
    """netagent's own table: NOTRACK for DNS to and from ``address``, UDP and TCP port 53,
    at raw priority in prerouting and output, as NodeLocal DNSCache installs them. Only
    NOTRACK: an accept in another table is not final, so its ACCEPT rules are not copied."""
    ip = "ip6" if ":" in address else "ip"
    comment = 'comment "netagent: NodeLocal DNS cache skips conntrack"'
    pre = "\n".join(f"    {ip} daddr {address} {p} dport 53 notrack {comment}"
                    for p in ("udp", "tcp"))
    out = "\n".join(
        [f"    {ip} saddr {address} {p} sport 53 notrack {comment}" for p in ("udp", "tcp")]
        + [f"    {ip} daddr {address} {p} dport 53 notrack {comment}" for p in ("udp", "tcp")])
    return (f"table inet {NFT_TABLE} {{\n"
            f"  chain prerouting {{\n    type filter hook prerouting priority raw;\n{pre}\n  }}\n"
            f"  chain output {{\n    type filter hook output priority raw;\n{out}\n  }}\n}}\n")


def nft_restore(address: str, *, run: Runner = subprocess.run) -> Outcome:
    """Replace netagent's table in one transaction: never a rule twice, never another
    table touched."""
    script = (f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n"
              + notrack_ruleset(address))
    return _nft(script, target=1, what=f"NOTRACK for {address}", run=run)


def nft_remove(*, run: Runner = subprocess.run) -> Outcome:
    script = f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n"
    return _nft(script, target=0, what="removed", run=run)


def _nft(script: str, *, target: int, what: str, run: Runner) -> Outcome:
    key = f"nftables:{NFT_TABLE}"
    try:
        proc = run([program(NFT), "-f", "-"], input=script, capture_output=True, text=True,
                   timeout=30)
    except FileNotFoundError:
        return Outcome(key, target, None, None, "failed", "nft is not installed")
    except (OSError, subprocess.SubprocessError) as err:
        return Outcome(key, target, None, None, "failed", f"nft: {err}")
    if proc.returncode != 0:
        return Outcome(key, target, None, None, "failed",
                       f"nft -f failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    return Outcome(key, target, None, None, "applied", what)
