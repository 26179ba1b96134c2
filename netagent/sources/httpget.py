"""HTTP requests on the standard library (http.client, ssl) with one deadline per exchange.

Connecting, the TLS handshake, the request, the status line, the headers and the body share
one deadline, enforced on every read of the socket (each ``recv`` waits at most for what is
left of it), so a server that trickles a byte a second cannot hold a request past its
timeout; the body is bounded too. The Kubernetes API client and the Prometheus client both
speak through ``request``; what can go wrong becomes a ``SourceError`` naming the URL.
"""

from __future__ import annotations

import http.client
import io
import selectors
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from netagent.errors import SourceError
from netagent.loaders import LoadError, read_text
from netagent.parse.kube import header_token_problem

_CHUNK = 1 << 16


class _DeadlineSocket:
    """A socket whose reads share one deadline; everything else goes to the real socket.

    ``http.client`` reads the status line, the headers and the body through
    ``sock.makefile("rb")``; the file made here sets the socket's timeout before every
    ``recv_into`` to what is left before the deadline, and raises ``TimeoutError`` once it
    has passed.
    """

    def __init__(self, sock: socket.socket, deadline: float,
                 clock: Callable[[], float]) -> None:
        self._sock = sock
        self._deadline = deadline
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def _left(self) -> float:
        left = self._deadline - self._clock()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        self._sock.settimeout(self._left())
        return self._sock.recv_into(buffer, nbytes)

    def sendall(self, data: Any) -> None:
        self._sock.settimeout(self._left())
        self._sock.sendall(data)

    def makefile(self, mode: str = "rb", buffering: int = -1) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"mode {mode!r} not supported")
        # As socket.makefile does: the socket stays open while the file is, even after
        # http.client closes the connection behind a response still being read.
        self._sock._io_refs += 1  # type: ignore[attr-defined]
        return io.BufferedReader(_DeadlineReader(self))


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock._decref_socketios()
        super().close()


class _Connection(http.client.HTTPConnection):
    deadline: float = 0.0
    clock: Callable[[], float] = time.monotonic

    def connect(self) -> None:
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self.deadline, self.clock)


class _TLSConnection(http.client.HTTPSConnection):
    deadline: float = 0.0
    clock: Callable[[], float] = time.monotonic

    def connect(self) -> None:
        # TCP as plain HTTP does; the handshake by hand, non-blocking, so that it too ends
        # at the deadline however slowly the server answers.
        http.client.HTTPConnection.connect(self)
        context: ssl.SSLContext = self._context  # type: ignore[attr-defined]
        tls = context.wrap_socket(self.sock, server_hostname=self.host,
                                  do_handshake_on_connect=False)
        tls.setblocking(False)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                events = selectors.EVENT_READ
            except ssl.SSLWantWriteError:
                events = selectors.EVENT_WRITE
            left = self.deadline - self.clock()
            with selectors.DefaultSelector() as selector:
                selector.register(tls, events)
                if left <= 0 or not selector.select(left):
                    raise TimeoutError("TLS handshake")
        tls.settimeout(self.timeout)
        self.sock = _DeadlineSocket(tls, self.deadline, self.clock)


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: scheme, host, port and a path prefix, from a base URL."""

    url: str
    https: bool
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """``ValueError`` when the URL is not http(s)://host[:port][/prefix]."""
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a port that is not one
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http:// or https:// URL with a host")
        https = parts.scheme == "https"
        return cls(url=url.rstrip("/"), https=https, host=parts.hostname,
                   port=port or (443 if https else 80), prefix=parts.path.rstrip("/"))


def read_token_file(path: str, *, where: str) -> str:
    """A bearer token from ``path`` (a service account's, a proxy's), re-read at every
    request since tokens rotate; ``SourceError`` prefixed with ``where`` when it cannot be
    read or could not go into a header."""
    try:
        token = read_text(path, limit=64 << 10, what="token file").strip()
    except FileNotFoundError as err:
        raise SourceError(f"{where}: token file {path} not found") from err
    except LoadError as err:
        raise SourceError(f"{where}: {err}") from err
    problem = header_token_problem(token)
    if problem:
        raise SourceError(f"{where}: token file {path} {problem}")
    return token


def get(endpoint: Endpoint, path: str, *, headers: Mapping[str, str], timeout: float,
        max_body: int, context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic) -> tuple[int, bytes]:
    """The status and the body of one GET; a failure to get them raises ``SourceError``."""
    return request("GET", endpoint, path, headers=headers, timeout=timeout,
                   max_body=max_body, context=context, clock=clock)


def request(method: str, endpoint: Endpoint, path: str, *, headers: Mapping[str, str],
            timeout: float, max_body: int, body: bytes | None = None,
            context: ssl.SSLContext | None = None,
            clock: Callable[[], float] = time.monotonic) -> tuple[int, bytes]:
    """The status and the body of one request; a failure to get them raises
    ``SourceError``."""
    where = f"{endpoint.url}{path.split('?', 1)[0]}"
    deadline = clock() + timeout
    conn: _Connection | _TLSConnection
    if endpoint.https:
        conn = _TLSConnection(endpoint.host, endpoint.port, timeout=timeout, context=context)
    else:
        conn = _Connection(endpoint.host, endpoint.port, timeout=timeout)
    conn.deadline, conn.clock = deadline, clock
    try:
        conn.request(method, endpoint.prefix + path, body=body, headers=dict(headers))
        resp = conn.getresponse()
        answer = _read(resp, deadline, clock, max_body=max_body, where=where)
    except TimeoutError as err:
        raise SourceError(f"{where}: no answer in {timeout:g} s") from err
    except ssl.SSLError as err:
        raise SourceError(f"{where}: TLS: {err.reason or err}") from err
    except ConnectionRefusedError as err:
        raise SourceError(f"{where}: connection refused") from err
    except (OSError, http.client.HTTPException, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise SourceError(f"{where}: {reason or type(err).__name__}") from err
    finally:
        conn.close()
    return resp.status, answer


def _read(resp: http.client.HTTPResponse, deadline: float, clock: Callable[[], float], *,
          max_body: int, where: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        if clock() > deadline:
            raise TimeoutError
        chunk = resp.read(_CHUNK)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > max_body:
            raise SourceError(f"{where}: answer larger than {max_body >> 20} MB")
        parts.append(chunk)
