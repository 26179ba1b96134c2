"""Netlink dumps over a plain socket, one received chunk at a time.

Chunks are handed out as they arrive so a caller can decode and fold them immediately:
a table of any size is never held in memory as a whole.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator

from netagent.errors import SourceError
from netagent.parse.netlink import DumpChunk, NetlinkError, chunk_status

_RECV_SIZE = 1 << 20  # the kernel fills at most ~32 KiB per dump chunk; one buffer fits any
_MAX_CHUNKS = 1_000_000  # a bound on the loop, far above any real table
_seq = itertools.count(1)


def next_seq() -> int:
    return next(_seq)


class Dump:
    """One dump request; iterate ``chunks()`` once, then read ``interrupted``.

    ``interrupted`` is the kernel's NLM_F_DUMP_INTR: the table changed during the dump, so
    a few entries may be missing or repeated.
    """

    def __init__(self, sock: socket.socket, request: bytes, *, what: str,
                 timeout: float = 10.0) -> None:
        self._sock = sock
        self._request = request
        self._what = what
        self._timeout = timeout
        self.interrupted = False

    def chunks(self) -> Iterator[bytes]:
        """Each chunk as received, for the caller to decode."""
        return self._receive(chunk_status)

    def consume(self, read: Callable[[bytes], DumpChunk]) -> None:
        """Hand each chunk to ``read``, a decoder that also tells where the dump ends (saving
        the separate walk over the message headers that ``chunks()`` makes)."""
        for _chunk in self._receive(read):
            pass

    def _receive(self, read: Callable[[bytes], DumpChunk]) -> Iterator[bytes]:
        sock, what = self._sock, self._what
        try:
            sock.settimeout(self._timeout)
            sock.sendall(self._request)
            buf = bytearray(_RECV_SIZE)
            for _ in range(_MAX_CHUNKS):
                n = sock.recv_into(buf)
                chunk = bytes(buf[:n])
                status = read(chunk)
                self.interrupted = self.interrupted or status.interrupted
                yield chunk
                if status.done:
                    return
            raise SourceError(f"{what}: no end after {_MAX_CHUNKS} chunks")
        except NetlinkError as err:
            raise SourceError(f"{what}: {err}") from err
        except TimeoutError as err:
            raise SourceError(f"{what}: no answer from the kernel in {self._timeout} s") from err
        except OSError as err:
            raise SourceError(f"{what}: {err.strerror or err}") from err
