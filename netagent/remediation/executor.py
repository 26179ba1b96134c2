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
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


def sysctl_path(root: Path, key: str) -> Path:
    """``net.ipv4.neigh.default.gc_thresh3`` under ``root`` (``/proc/sys``)."""
    return root.joinpath(*key.split("."))


def write_value(path: Path, value: int, *, key: str) -> Outcome:
    """Write ``value`` to an existing file of the kernel's (a sysctl or a module parameter)
    and read it back. The file is never created: a key missing under a sysctl root is a
    key this kernel lacks (or the wrong root), not something to make."""
    try:
        before = _read_int(path)
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
        after = _read_int(path)
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


def _read_int(path: Path) -> int:
    with open(path) as f:
        words = f.read().split()
    if not words:
        raise ValueError("empty")
    return int(words[0])


def _reason(err: OSError, path: Path) -> str:
    what = _REASONS.get(err.errno or 0) or os.strerror(err.errno or errno.EIO)
    return f"{path}: {what}"
