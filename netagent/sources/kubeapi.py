"""A minimal read-only Kubernetes API client on the standard library (http.client, ssl).

One GET at a time, a bounded body, and one deadline for the whole exchange: connecting,
the TLS handshake, the request, the status line, the headers and the body. The deadline is
enforced on every read of the socket (each ``recv`` waits at most for what is left of it),
so a server that trickles a byte a second cannot hold a request past ``timeout``.
What a person would type to do the same: ``kubectl get --raw PATH``.
Everything that can go wrong (refused, timed out, TLS, HTTP status) becomes a
``SourceError`` that says why, with the API's own ``Status`` message when there is one.
"""

from __future__ import annotations

import http.client
import io
import os
import selectors
import socket
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from netagent.errors import SourceError
from netagent.loaders import LoadError, read_text
from netagent.parse.kube import KubeTarget, error_reason, header_token_problem

# A metadata page of PAGE_SIZE (100) nodes with their managedFields is ~1 MB; 16 MB leaves
# room for fat annotations and still bounds what one answer can cost.
MAX_BODY = 16 << 20
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


class KubeClient:
    """GETs against one API server with the target's credentials."""

    def __init__(self, target: KubeTarget, *, timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.timeout = timeout
        self.clock = clock
        try:
            url = urllib.parse.urlsplit(target.server)
            port = url.port
        except ValueError as err:  # an in-cluster KUBERNETES_SERVICE_PORT that is not one
            raise SourceError(f"{target.origin}: server {target.server!r}: {err}") from err
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._context = self._ssl_context() if self._https else None

    def _ssl_context(self) -> ssl.SSLContext:
        t = self.target
        for what, path in (("CA", t.ca_file), ("client certificate", t.cert_file),
                           ("client key", t.key_file)):
            if path and not os.path.exists(path):
                raise SourceError(f"{t.origin}: {what} file {path} not found")
        try:
            if t.insecure:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(cafile=t.ca_file, cadata=t.ca_data)
            if t.cert_file or t.cert_data:
                self._load_client_cert(ctx)
        except (OSError, ssl.SSLError, ValueError) as err:
            raise SourceError(f"{t.origin}: cannot set up TLS: {err}") from err
        return ctx

    def _load_client_cert(self, ctx: ssl.SSLContext) -> None:
        t = self.target
        if t.cert_data is None and t.key_data is None:
            ctx.load_cert_chain(t.cert_file or "", t.key_file)
            return
        # ssl loads certificates from files only: inline data goes to a private temporary
        # directory that is removed as soon as the context holds it.
        with tempfile.TemporaryDirectory(prefix="netagent-") as tmp:
            cert = t.cert_file
            if t.cert_data is not None:
                cert = os.path.join(tmp, "cert.pem")
                _write_private(cert, t.cert_data)
            key = t.key_file
            if t.key_data is not None:
                key = os.path.join(tmp, "key.pem")
                _write_private(key, t.key_data)
            ctx.load_cert_chain(cert or "", key)

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": "netagent"}
        token = self.target.token
        if self.target.token_file:
            try:
                token = read_text(self.target.token_file, limit=64 << 10,
                                  what="token file").strip()
            except FileNotFoundError as err:
                raise SourceError(f"{self.target.origin}: token file "
                                  f"{self.target.token_file} not found") from err
            except LoadError as err:
                raise SourceError(f"{self.target.origin}: {err}") from err
            problem = header_token_problem(token)
            if problem:
                raise SourceError(f"{self.target.origin}: token file "
                                  f"{self.target.token_file} {problem}")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def get(self, path: str, *, accept: str) -> bytes:
        """The body of a 200 answer; anything else raises ``SourceError`` with the reason."""
        where = f"{self.target.server}{path.split('?', 1)[0]}"
        headers = self._headers(accept)
        deadline = self.clock() + self.timeout
        conn: _Connection | _TLSConnection
        if self._https:
            conn = _TLSConnection(self._host, self._port, timeout=self.timeout,
                                  context=self._context)
        else:
            conn = _Connection(self._host, self._port, timeout=self.timeout)
        conn.deadline, conn.clock = deadline, self.clock
        try:
            conn.request("GET", self._prefix + path, headers=headers)
            resp = conn.getresponse()
            body = self._read(resp, deadline, where)
        except TimeoutError as err:
            raise SourceError(f"{where}: no answer in {self.timeout:g} s") from err
        except ssl.SSLError as err:
            raise SourceError(f"{where}: TLS: {err.reason or err}") from err
        except ConnectionRefusedError as err:
            raise SourceError(f"{where}: connection refused") from err
        except (OSError, http.client.HTTPException, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise SourceError(f"{where}: {reason or type(err).__name__}") from err
        finally:
            conn.close()
        if resp.status != 200:
            raise SourceError(f"{where}: {error_reason(resp.status, body)}")
        return body

    def _read(self, resp: http.client.HTTPResponse, deadline: float, where: str) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            if self.clock() > deadline:
                raise TimeoutError
            chunk = resp.read(_CHUNK)
            if not chunk:
                return b"".join(parts)
            size += len(chunk)
            if size > MAX_BODY:
                raise SourceError(f"{where}: answer larger than {MAX_BODY >> 20} MB")
            parts.append(chunk)


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
