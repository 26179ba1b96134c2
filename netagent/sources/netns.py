"""Every network namespace on the node, and netlink sockets inside them.

A person would look with ``lsns -t net`` and ``ip netns list``. Namespaces are found from
``/proc/*/ns/net`` (every process, so every pod sandbox when the agent shares the host PID
namespace) deduplicated by inode, plus the bind mounts in ``/run/netns`` that may have no
process at all. A socket created inside a namespace stays bound to it, so entering is done
in a short-lived thread: the calling thread never changes namespace, even on error.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

from netagent.errors import SourceError

NETLINK_ROUTE = 0


@dataclass(frozen=True)
class Namespace:
    """One network namespace: a path that opens it and a name a person recognises."""

    name: str  # "host", the /run/netns name, or "pid:<pid>"
    path: str
    inode: int
    is_self: bool = False


@dataclass(frozen=True)
class Discovery:
    namespaces: tuple[Namespace, ...]
    # where a namespace may exist that could not be inspected: path -> reason
    uninspectable: dict[str, str] = field(default_factory=dict)


def discover(*, proc_root: str = "/proc", run_netns: str = "/run/netns") -> Discovery:
    """Find every namespace; say which processes could not be inspected (and so may hide one)."""
    proc = Path(proc_root)
    self_ino = _inode(proc / "self" / "ns" / "net")
    found: dict[tuple[int, int], Namespace] = {}
    uninspectable: dict[str, str] = {}

    run = Path(run_netns)
    try:
        names = sorted(os.listdir(run))
    except FileNotFoundError:
        names = []
    except PermissionError:
        names = []
        uninspectable[str(run)] = "permission denied"
    for name in names:
        path = run / name
        try:
            st = path.stat()
        except OSError as err:
            uninspectable[str(path)] = err.strerror or str(err)
            continue
        found.setdefault((st.st_dev, st.st_ino),
                         Namespace(name, str(path), st.st_ino, st.st_ino == self_ino))

    try:
        pids = sorted(int(p) for p in os.listdir(proc) if p.isdigit())
    except OSError as err:
        raise SourceError(f"cannot list {proc}: {err.strerror}") from err
    for pid in pids:
        path = proc / str(pid) / "ns" / "net"
        try:
            st = path.stat()
        except FileNotFoundError:
            continue  # the process exited, or a kernel thread without a namespace link
        except OSError as err:
            uninspectable[str(path)] = err.strerror or str(err)
            continue
        key = (st.st_dev, st.st_ino)
        if key not in found:
            is_self = st.st_ino == self_ino
            found[key] = Namespace("host" if is_self else f"pid:{pid}", str(path),
                                   st.st_ino, is_self)
    if self_ino is not None and not any(ns.is_self for ns in found.values()):
        found[(0, self_ino)] = Namespace("host", str(proc / "self" / "ns" / "net"),
                                         self_ino, True)
    ordered = sorted(found.values(), key=lambda ns: (not ns.is_self, ns.name))
    return Discovery(tuple(ordered), uninspectable)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def netlink_socket(ns: Namespace, protocol: int = NETLINK_ROUTE) -> socket.socket:
    """A netlink socket bound to ``ns``; the caller closes it."""
    if ns.is_self:
        return _new_socket(protocol)
    result: list[socket.socket] = []
    failure: list[BaseException] = []

    def enter_and_open() -> None:
        # setns(2) with CLONE_NEWNET changes only this thread, which then ends.
        try:
            fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                pyroute2_netns.setns(fd, flags=0)
            finally:
                os.close(fd)
            result.append(_new_socket(protocol))
        except BaseException as err:  # handed to the caller below
            failure.append(err)

    worker = threading.Thread(target=enter_and_open, name=f"netns-{ns.name}", daemon=True)
    worker.start()
    worker.join(timeout=10)
    if result:
        return result[0]
    if failure:
        err = failure[0]
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise SourceError(f"cannot enter network namespace {ns.name}: {reason}") from err
    raise SourceError(f"entering network namespace {ns.name} did not finish in 10 s")


def _new_socket(protocol: int) -> socket.socket:
    try:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    except OSError as err:
        raise SourceError(f"cannot open a netlink socket: {err.strerror}") from err
