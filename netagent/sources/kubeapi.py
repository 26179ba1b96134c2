"""A minimal read-only Kubernetes API client on the standard library (http.client, ssl).

One GET at a time, a timeout on every socket operation and a deadline on the whole answer,
a bounded body. What a person would type to do the same: ``kubectl get --raw PATH``.
Everything that can go wrong (refused, timed out, TLS, HTTP status) becomes a
``SourceError`` that says why, with the API's own ``Status`` message when there is one.
"""

from __future__ import annotations

import http.client
import os
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Callable

from netagent.errors import SourceError
from netagent.parse.kube import KubeTarget, error_reason

MAX_BODY = 64 << 20  # a metadata page of 500 nodes is a few MB
_CHUNK = 1 << 16


class KubeClient:
    """GETs against one API server with the target's credentials."""

    def __init__(self, target: KubeTarget, *, timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.timeout = timeout
        self.clock = clock
        url = urllib.parse.urlsplit(target.server)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port or (443 if self._https else 80)
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
                with open(self.target.token_file) as f:
                    token = f.read().strip()
            except OSError as err:
                raise SourceError(f"{self.target.origin}: cannot read token "
                                  f"{self.target.token_file}: {err.strerror}") from err
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def get(self, path: str, *, accept: str) -> bytes:
        """The body of a 200 answer; anything else raises ``SourceError`` with the reason."""
        where = f"{self.target.server}{path.split('?', 1)[0]}"
        deadline = self.clock() + self.timeout
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                               context=self._context)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            conn.request("GET", self._prefix + path, headers=self._headers(accept))
            resp = conn.getresponse()
            body = self._read(resp, deadline, where)
        except TimeoutError as err:
            raise SourceError(f"{where}: no answer in {self.timeout:g} s") from err
        except ssl.SSLError as err:
            raise SourceError(f"{where}: TLS: {err.reason or err}") from err
        except ConnectionRefusedError as err:
            raise SourceError(f"{where}: connection refused") from err
        except (OSError, http.client.HTTPException) as err:
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
