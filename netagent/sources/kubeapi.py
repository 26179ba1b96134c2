"""A minimal Kubernetes API client on the standard library (http.client, ssl).

One request at a time through ``sources.httpget``: a bounded body, and one deadline for the
whole exchange (connecting, the TLS handshake, the request, the headers and the body).
What a person would type to do the same: ``kubectl get --raw PATH``, ``kubectl patch
--subresource status``. Credentials: a token, a token file (re-read at every request), a
client certificate, or a kubeconfig ``exec`` plugin (run when no credential is cached or the
cached one expired or was refused, with a timeout). Everything that can go wrong (refused,
timed out, TLS, HTTP status) becomes a ``SourceError`` (``KubeError`` for an HTTP status)
that says why, with the API's own ``Status`` message when there is one.
"""

from __future__ import annotations

import datetime
import json
import os
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from netagent.config import ClusterConfig
from netagent.errors import NetagentError, SourceError
from netagent.loaders import MAX_KUBECONFIG_BYTES, LoadError, read_text
from netagent.parse.kube import (
    ExecCredential,
    KubeTarget,
    error_reason,
    in_cluster_target,
    parse_exec_credential,
    parse_kubeconfig,
)
from netagent.sources import httpget

# A metadata page of PAGE_SIZE (100) nodes with their managedFields is ~1 MB; 16 MB leaves
# room for fat annotations and still bounds what one answer can cost.
MAX_BODY = 16 << 20
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
EXEC_TIMEOUT = 30.0  # seconds an exec credential plugin may take (they call cloud APIs)
STRATEGIC_MERGE = "application/strategic-merge-patch+json"


class KubeError(SourceError):
    """The API server answered with a status other than 2xx."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def resolve_target(config: ClusterConfig, *, env: Mapping[str, str],
                   service_account_dir: str = SERVICE_ACCOUNT_DIR) -> KubeTarget | None:
    """Where to ask: the configured kubeconfig, ``KUBECONFIG``, or the pod's account."""
    paths = [config.kubeconfig] if config.kubeconfig else [
        p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if paths:
        docs = []
        for path in paths:
            try:
                docs.append((path, read_text(path, limit=MAX_KUBECONFIG_BYTES,
                                             what="kubeconfig")))
            except FileNotFoundError:
                continue  # kubectl skips missing KUBECONFIG entries too
            except LoadError as err:
                raise SourceError(str(err)) from err
        if not docs:
            raise SourceError(f"kubeconfig not found: {os.pathsep.join(paths)}")
        try:
            return parse_kubeconfig(docs)
        except NetagentError as err:
            raise SourceError(f"kubeconfig: {err}") from err
    host = env.get("KUBERNETES_SERVICE_HOST")
    port = env.get("KUBERNETES_SERVICE_PORT")
    token = os.path.join(service_account_dir, "token")
    if host and port and os.path.exists(token):
        return in_cluster_target(host=host, port=port, token_file=token,
                                 ca_file=os.path.join(service_account_dir, "ca.crt"))
    return None


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
        self._credential: ExecCredential | None = None
        self._credential_until = 0.0  # monotonic
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
                self._load_client_cert(ctx, t.cert_file, t.cert_data, t.key_file, t.key_data)
        except (OSError, ssl.SSLError, ValueError) as err:
            raise SourceError(f"{t.origin}: cannot set up TLS: {err}") from err
        return ctx

    @staticmethod
    def _load_client_cert(ctx: ssl.SSLContext, cert_file: str | None,
                          cert_data: bytes | None, key_file: str | None,
                          key_data: bytes | None) -> None:
        if cert_data is None and key_data is None:
            ctx.load_cert_chain(cert_file or "", key_file)
            return
        # ssl loads certificates from files only: inline data goes to a private temporary
        # directory that is removed as soon as the context holds it.
        with tempfile.TemporaryDirectory(prefix="netagent-") as tmp:
            cert = cert_file
            if cert_data is not None:
                cert = os.path.join(tmp, "cert.pem")
                _write_private(cert, cert_data)
            key = key_file
            if key_data is not None:
                key = os.path.join(tmp, "key.pem")
                _write_private(key, key_data)
            ctx.load_cert_chain(cert or "", key)

    # -- exec credential plugins -----------------------------------------------------------
    def _exec_credential(self) -> ExecCredential:
        """The plugin's credential, run again once it expired (or was refused)."""
        plugin = self.target.exec_plugin
        assert plugin is not None
        if self._credential is not None and self.clock() < self._credential_until:
            return self._credential
        info = {"kind": "ExecCredential", "apiVersion": plugin.api_version,
                "spec": {"interactive": False}}
        env = {**os.environ, **dict(plugin.env), "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            done = subprocess.run([plugin.command, *plugin.args], env=env,
                                  capture_output=True, text=True, timeout=EXEC_TIMEOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError as err:
            raise SourceError(f"{plugin.where}: exec plugin {plugin.command} not found"
                              ) from err
        except subprocess.TimeoutExpired as err:
            raise SourceError(f"{plugin.where}: exec plugin {plugin.command} did not answer "
                              f"in {EXEC_TIMEOUT:g} s") from err
        except OSError as err:
            raise SourceError(f"{plugin.where}: exec plugin {plugin.command}: "
                              f"{err.strerror or err}") from err
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
            raise SourceError(f"{plugin.where}: exec plugin {plugin.command} exited "
                              f"{done.returncode}: {last}")
        try:
            cred = parse_exec_credential(done.stdout, plugin)
        except NetagentError as err:
            raise SourceError(str(err)) from err
        self._credential, self._credential_until = cred, self._valid_until(cred)
        if cred.cert_data and self._endpoint.https:
            try:
                ctx = self._ssl_context()
                self._load_client_cert(ctx, None, cred.cert_data, None, cred.key_data)
            except (OSError, ssl.SSLError, ValueError) as err:
                raise SourceError(f"{plugin.where}: the plugin's client certificate: {err}"
                                  ) from err
            self._context = ctx
        return cred

    def _valid_until(self, cred: ExecCredential) -> float:
        """Monotonic time to run the plugin again: a minute before it said the credential
        expires, or never (until the server refuses it) when it said nothing."""
        if not cred.expires:
            return float("inf")
        try:
            expires = datetime.datetime.fromisoformat(cred.expires.replace("Z", "+00:00"))
        except ValueError:
            return 0.0  # unreadable: ask again next time rather than trust it forever
        left = expires.timestamp() - time.time() - 60
        return self.clock() + max(0.0, left)

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": "netagent"}
        token = self.target.token
        if self.target.token_file:
            token = httpget.read_token_file(self.target.token_file, where=self.target.origin)
        if self.target.exec_plugin is not None:
            token = self._exec_credential().token or token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    # -- requests ----------------------------------------------------------------------
    def get(self, path: str, *, accept: str) -> bytes:
        """The body of a 200 answer; anything else raises ``SourceError`` with the reason."""
        return self.request("GET", path, accept=accept)

    def request(self, method: str, path: str, *, accept: str = "application/json",
                body: Any = None, content_type: str = "application/json") -> bytes:
        """One request; the body of a 2xx answer, else ``KubeError`` with the API's reason.
        A 401 drops a plugin's cached credential, so the next request runs it again."""
        headers = self._headers(accept)
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        status, answer = httpget.request(method, self._endpoint, path, headers=headers,
                                         body=data, timeout=self.timeout, max_body=MAX_BODY,
                                         context=self._context, clock=self.clock)
        if not 200 <= status < 300:
            if status == 401:
                self._credential, self._credential_until = None, 0.0
            where = f"{method} {self.target.server}{path.split('?', 1)[0]}"
            raise KubeError(f"{where}: {error_reason(status, answer)}", status)
        return answer


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
