"""Reading ``/proc`` (and ``/proc/sys``) under an injectable root."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from netagent.errors import NetagentError, SourceError
from netagent.model import KernelVersion
from netagent.parse.kernel import parse_release


class ProcFS:
    """Files under a proc root; errors become ``SourceError`` with a reason a person reads."""

    def __init__(self, root: str | os.PathLike[str] = "/proc") -> None:
        self.root = Path(root)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def read_text(self, relative: str) -> str:
        path = self.root / relative
        try:
            return path.read_text()
        except FileNotFoundError as err:
            raise SourceError(f"{path} does not exist") from err
        except PermissionError as err:
            raise SourceError(f"{path}: permission denied") from err
        except OSError as err:
            raise SourceError(f"{path}: {os.strerror(err.errno or errno.EIO)}") from err

    def read_int(self, relative: str) -> int:
        text = self.read_text(relative).strip()
        try:
            return int(text.split()[0])
        except (ValueError, IndexError) as err:
            raise SourceError(f"{self.root / relative}: not an integer: {text!r}") from err

    def sysctl(self, name: str) -> int:
        """``net.ipv4.neigh.default.gc_thresh3`` -> the integer in ``/proc/sys/...``."""
        return self.read_int("sys/" + name.replace(".", "/"))

    def kernel(self) -> KernelVersion:
        """The running kernel (``osrelease`` under this root, else ``uname -r``)."""
        try:
            return parse_release(self.read_text("sys/kernel/osrelease"))
        except NetagentError:
            return parse_release(os.uname().release)
