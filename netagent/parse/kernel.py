"""The kernel release string (``uname -r``, ``/proc/sys/kernel/osrelease``)."""

from __future__ import annotations

import re

from netagent.errors import ParseError
from netagent.model import KernelVersion

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def parse_release(release: str) -> KernelVersion:
    release = release.strip()
    match = _RELEASE.match(release)
    if not match:
        raise ParseError(f"cannot read a kernel version from {release!r}")
    major, minor, patch = match.groups()
    return KernelVersion(release=release, major=int(major), minor=int(minor),
                         patch=int(patch or 0))
