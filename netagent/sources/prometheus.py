"""A read-only client of the Prometheus HTTP API (Prometheus, Thanos Query, Mimir, ...).

What a person would type to do the same::

    curl -G URL/api/v1/query --data-urlencode 'query=netagent_cluster_nodes'

Each request has one deadline and a bounded answer (``sources.httpget``). Basic auth, a
bearer token (read from a file, as Prometheus's own ``authorization.credentials_file``) and
a CA file cover the endpoints that sit behind a proxy. Every failure is a ``SourceError``
naming the URL and the reason.
"""

from __future__ import annotations

import base64
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from netagent.errors import ParseError, SourceError
from netagent.parse import prometheus
from netagent.parse.kube import header_token_problem
from netagent.sources import httpget

T = TypeVar("T")

# An instant vector of a 5,000-node fleet is ~1 MB; a range of one series is far less.
MAX_BODY = 32 << 20


@dataclass(frozen=True)
class PrometheusTarget:
    url: str
    timeout: float = 10.0
    ca_file: str | None = None
    insecure: bool = False
    username: str | None = None
    password: str | None = None
    token_file: str | None = None


class PrometheusClient:
    def __init__(self, target: PrometheusTarget, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.clock = clock
        try:
            self._endpoint = httpget.Endpoint.parse(target.url)
        except ValueError as err:
            raise SourceError(f"{target.url}: {err}") from err
        if urllib.parse.urlsplit(target.url).username is not None:
            raise SourceError(f"{target.url}: put the user in --user, not in the URL "
                              "(the URL is printed in messages)")
        self._context = self._ssl_context() if self._endpoint.https else None
        self._headers = {"Accept": "application/json", "User-Agent": "netagent"}
        self._headers.update(self._auth())

    def _ssl_context(self) -> ssl.SSLContext:
        t = self.target
        try:
            if t.insecure:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                return ctx
            return ssl.create_default_context(cafile=t.ca_file)
        except (OSError, ssl.SSLError, ValueError) as err:
            raise SourceError(f"{t.url}: cannot use CA file {t.ca_file}: {err}") from err

    def _auth(self) -> dict[str, str]:
        t = self.target
        if t.username is not None and t.token_file is not None:
            raise SourceError(f"{t.url}: basic auth and a bearer token are exclusive")
        if t.username is not None:
            pair = f"{t.username}:{t.password or ''}"
            if header_token_problem(pair) or ":" in t.username:
                raise SourceError(f"{t.url}: the user or password holds a control character "
                                  "or the user a colon")
            return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        if t.token_file is not None:
            token = httpget.read_token_file(t.token_file, where=t.url)
            if not token:
                raise SourceError(f"{t.url}: token file {t.token_file} is empty")
            return {"Authorization": f"Bearer {token}"}
        return {}

    def query(self, expr: str, *, at: float) -> list[prometheus.Sample]:
        body = self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        return self._parsed(prometheus.vector, body, expr)

    def query_range(self, expr: str, *, start: float, end: float,
                    step: float) -> list[prometheus.Series]:
        body = self._get("/api/v1/query_range", {
            "query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
        return self._parsed(prometheus.matrix, body, expr)

    def _get(self, path: str, params: dict[str, str]) -> bytes:
        # The server's own timeout too, so it gives up on a heavy query when the client does.
        params = {**params, "timeout": f"{self.target.timeout:g}s"}
        status, body = httpget.get(
            self._endpoint, f"{path}?{urllib.parse.urlencode(params)}",
            headers=self._headers, timeout=self.target.timeout, max_body=MAX_BODY,
            context=self._context, clock=self.clock)
        if status != 200:
            reason = ""
            try:  # Prometheus explains a 400/422/503 in the usual error shape
                prometheus.vector(body)
            except ParseError as err:
                reason = str(err) if str(err).startswith("query failed") else ""
            if not reason:
                text = " ".join(body[:200].decode("utf-8", "replace").split())
                reason = text[:120]
            raise SourceError(f"{self.target.url}{path}: HTTP {status}"
                              + (f": {reason}" if reason else ""))
        return body

    def _parsed(self, parse: Callable[[bytes], T], body: bytes, expr: str) -> T:
        try:
            return parse(body)
        except ParseError as err:
            raise SourceError(f"{self.target.url}: {err} (query: {expr})") from err
