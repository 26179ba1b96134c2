"""The agent's HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz``.

``curl -s localhost:9465/metrics``; ``/healthz`` answers 200 while the process serves;
``/readyz`` answers 200 once every source has been collected once, 503 before. Served by
``wsgiref`` in its own threads, so a scrape never waits for a collection.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app

from netagent.config import Config
from netagent.errors import ConfigError
from netagent.exporter.collector import NetagentCollector
from netagent.exporter.state import AgentState

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


def make_registry(latest: Callable[[], AgentState], *, config: Config | None = None
                  ) -> CollectorRegistry:
    """Our collector plus the standard ``process_*`` series (RSS, CPU, open fds)."""
    registry = CollectorRegistry()
    registry.register(NetagentCollector(latest, config=config))
    ProcessCollector(registry=registry)
    return registry


def make_app(registry: CollectorRegistry, *, ready: Callable[[], bool]) -> Callable[..., Any]:
    metrics = make_wsgi_app(registry)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            if ready():
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable",
                         "not ready: first collection of every source not finished\n")
        if path == "/":
            return _text(start_response, "200 OK",
                         "netagent: /metrics /healthz /readyz\n")
        return _text(start_response, "404 Not Found", "not found\n")

    return app


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data)))])
    return [data]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # One line per request would drown the state-change log; scrapes are not events.
        return


class HttpServer:
    """A threaded WSGI server; ``start()`` binds and serves in a thread, ``stop()`` ends it."""

    def __init__(self, app: Callable[..., Any], *, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(host, port, app, server_class=server_class,
                                       handler_class=_QuietHandler)
        except OSError as err:
            raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}"
                              ) from err
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="http", daemon=True)

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
