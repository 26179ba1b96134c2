"""The agent's HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz``.

``curl -s localhost:9465/metrics``; ``/healthz`` answers 200 while the process serves;
``/readyz`` answers 200 once every source has been collected once, 503 before. GET and
HEAD are answered, other methods are 405. Served by ``wsgiref`` handlers on a small pool
of threads of its own (see ``_PooledServer``), so a scrape never waits for a collection,
and idle or stalled clients cannot take every thread.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app

from netagent.config import Config
from netagent.errors import ConfigError
from netagent.exporter import kubernetes as kube_families
from netagent.exporter import remediation as remediation_families
from netagent.exporter.collector import NetagentCollector, StatusCollector
from netagent.state import AgentState, KubeReportStatus, RemediationStatus

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


def make_registry(latest: Callable[[], AgentState], *, config: Config | None = None,
                  remediation: Callable[[], RemediationStatus | None] | None = None,
                  kubernetes: Callable[[], KubeReportStatus] | None = None
                  ) -> CollectorRegistry:
    """Our collector plus the standard ``process_*`` series (RSS, CPU, open fds)."""
    registry = CollectorRegistry()
    registry.register(NetagentCollector(latest, config=config))
    if remediation is not None:
        registry.register(StatusCollector(remediation_families.families, remediation))
    if kubernetes is not None:
        registry.register(StatusCollector(kube_families.families, kubernetes))
    ProcessCollector(registry=registry)
    return registry


def make_app(registry: CollectorRegistry, *, ready: Callable[[], bool]) -> Callable[..., Any]:
    metrics = make_wsgi_app(registry)

    def route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
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

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "GET":
            return route(environ, start_response)
        if method == "HEAD":
            # The GET answer's status and headers, its length included, without its body
            # (RFC 9110 9.3.2).
            answer: list[Any] = []

            def keep(status: str, headers: list[tuple[str, str]], *exc: Any
                     ) -> Callable[[bytes], None]:
                answer[:] = [status, list(headers)]
                return lambda data: None

            body = b"".join(route({**environ, "REQUEST_METHOD": "GET"}, keep))
            status, headers = answer
            if not any(name.lower() == "content-length" for name, _ in headers):
                headers.append(("Content-Length", str(len(body))))
            start_response(status, headers)
            return []
        return _text(start_response, "405 Method Not Allowed", f"{method} not allowed\n",
                     extra=[("Allow", "GET, HEAD")])

    return app


def _text(start_response: StartResponse, status: str, body: str,
          extra: Sequence[tuple[str, str]] = ()) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data))), *extra])
    return [data]


class _QuietHandler(WSGIRequestHandler):
    # Each read of a request waits at most this long: a client that connects, sends part
    # of a request and stalls holds a worker for no longer.
    timeout = 5.0

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request would drown the state-change log; scrapes are not events.
        return


class _PooledServer(WSGIServer):
    """A WSGI server whose connections wait in a selector, not in threads.

    ``socketserver.ThreadingMixIn`` starts a thread per connection, so idle clients each
    hold one (1,000 idle connections were 478 threads and 64 MB). Here one thread accepts
    and watches every open connection; only one with bytes to read goes to a small pool of
    workers, and one left idle for ``idle_timeout`` is closed. The listen backlog is 1,024
    (socketserver's default of 5 refused bursts of concurrent scrapes).
    """

    request_queue_size = 1024
    allow_reuse_address = True
    workers = 4
    idle_timeout = 10.0
    max_waiting = 4096  # open connections not yet readable; the oldest is closed past this

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool = ThreadPoolExecutor(max_workers=self.workers,
                                        thread_name_prefix="http-worker")
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self.waiting = 0  # connections accepted and not yet readable: for tests

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        waiting: dict[socket.socket, float] = {}  # connection -> when accepted
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ, None)
            try:
                while not self._stopping.is_set():
                    for key, _ in selector.select(poll_interval):
                        if key.data is None:
                            self._accept(selector, waiting)
                        else:
                            conn = key.fileobj
                            assert isinstance(conn, socket.socket)
                            selector.unregister(conn)
                            del waiting[conn]
                            self._pool.submit(self._serve_one, conn, key.data)
                    self._expire(selector, waiting, time.monotonic() - self.idle_timeout)
                    self.waiting = len(waiting)
            finally:
                for conn in waiting:
                    conn.close()
                self._stopped.set()

    def _accept(self, selector: selectors.BaseSelector,
                waiting: dict[socket.socket, float]) -> None:
        try:
            conn, address = self.socket.accept()
        except BlockingIOError:
            return
        except OSError as err:  # EMFILE and friends: let the backlog hold them a moment
            log.warning("http: cannot accept a connection: %s", err.strerror or err)
            time.sleep(0.05)
            return
        if len(waiting) >= self.max_waiting:
            oldest = min(waiting, key=waiting.__getitem__)
            selector.unregister(oldest)
            del waiting[oldest]
            oldest.close()
        waiting[conn] = time.monotonic()
        selector.register(conn, selectors.EVENT_READ, address)

    @staticmethod
    def _expire(selector: selectors.BaseSelector, waiting: dict[socket.socket, float],
                before: float) -> None:
        for conn in [c for c, since in waiting.items() if since < before]:
            selector.unregister(conn)
            del waiting[conn]
            conn.close()

    def _serve_one(self, conn: socket.socket, address: Any) -> None:
        try:
            self.finish_request(conn, address)
        except Exception:  # a broken client never ends the server
            log.debug("http: request from %s failed", address, exc_info=True)
        finally:
            self.shutdown_request(conn)

    def stop(self) -> None:
        self._stopping.set()
        self._stopped.wait(timeout=2)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.server_close()


class _PooledServer6(_PooledServer):
    address_family = socket.AF_INET6


class HttpServer:
    """The agent's HTTP endpoints; ``start()`` binds and serves in a thread, ``stop()`` ends it."""

    def __init__(self, app: Callable[..., Any], *, host: str, port: int) -> None:
        server_class = _PooledServer6 if ":" in host else _PooledServer
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

    @property
    def waiting(self) -> int:
        """Open connections that have sent nothing yet."""
        return self._server.waiting

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.stop()
        self._thread.join(timeout=2)
