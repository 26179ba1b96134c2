"""A minimal read-only Kubernetes API client on the standard library (http.client, ssl).

One GET at a time through ``sources.httpget``: a bounded body, and one deadline for the whole
exchange (connecting, the TLS handshake, the request, the headers and the body).
What a person would type to do the same: ``kubectl get --raw PATH``.
Everything that can go wrong (refused, timed out, TLS, HTTP status) becomes a
``SourceError`` that says why, with the API's own ``Status`` message when there is one.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import time
from collections.abc import Callable

from netagent.errors import SourceError
from netagent.parse.kube import KubeTarget, error_reason
from netagent.sources import httpget

# A metadata page of PAGE_SIZE (100) nodes with their managedFields is ~1 MB; 16 MB leaves
# room for fat annotations and still bounds what one answer can cost.
MAX_BODY = 16 << 20


class KubeClient:
    """GETs against one API server with the target's credentials."""

    def __init__(self, target: KubeTarget, *, timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.timeout = timeout
        self.clock = clock
        try:
            self._endpoint = httpget.Endpoint.parse(target.server)
        except ValueError as err:  # an in-cluster KUBERNETES_SERVICE_PORT that is not one
            raise SourceError(f"{target.origin}: server {target.server!r}: {err}") from err
        self._context = self._ssl_context() if self._endpoint.https else None

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
            token = httpget.read_token_file(self.target.token_file, where=self.target.origin)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def get(self, path: str, *, accept: str) -> bytes:
        """The body of a 200 answer; anything else raises ``SourceError`` with the reason."""
        status, body = httpget.get(self._endpoint, path, headers=self._headers(accept),
                                timeout=self.timeout, max_body=MAX_BODY,
                                context=self._context, clock=self.clock)
        if status != 200:
            where = f"{self.target.server}{path.split('?', 1)[0]}"
            raise SourceError(f"{where}: {error_reason(status, body)}")
        return body


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
