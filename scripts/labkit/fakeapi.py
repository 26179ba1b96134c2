"""A fake Kubernetes API server that serves ``GET /api/v1/nodes`` from a node list document.

Enough of the real thing for netagent's cluster source: ``limit``/``continue`` paging (with
or without ``remainingItemCount``, as servers before 1.15 answer), bearer-token checks with
the API's ``Status`` bodies, injected failures and delays, optional TLS. It listens on a
socket it is given or on 127.0.0.1, so traffic never leaves the host (or the lab namespace
the socket was made in: see ``listen_in_namespace``).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


def status(code: int, reason: str, message: str) -> bytes:
    """A ``Status`` body as the API server writes it."""
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                       "status": "Failure", "message": message, "reason": reason,
                       "code": code}).encode()


class FakeAPI:
    """Serve ``doc`` (a NodeList or PartialObjectMetadataList) until ``stop()``."""

    def __init__(self, doc: dict[str, Any], *, token: str | None = None,
                 remaining_count: bool = True, sock: socket.socket | None = None,
                 certfile: str | None = None, keyfile: str | None = None) -> None:
        self.doc = doc
        self.token = token
        self.remaining_count = remaining_count
        self.fail: tuple[int, bytes] | None = None  # answer every request with this
        self.delay = 0.0  # seconds before answering
        self.trickle = 0.0  # > 0: write the answer one byte per this many seconds
        self.stuck_continue: str | None = None  # every page ends with this continue token
        self.page_body: bytes | None = None  # answer every 200 with this body instead
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=sock is None)
        if sock is not None:
            self.server.socket.close()
            self.server.socket = sock
            self.server.server_address = sock.getsockname()
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if certfile else "http"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"{self.scheme}://{name}:{port}"

    def start(self) -> FakeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((h.path, dict(h.headers)))
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            return self._send(h, *self.fail)
        if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, status(401, "Unauthorized", "Unauthorized"))
        url = urllib.parse.urlsplit(h.path)
        if url.path != "/api/v1/nodes":
            return self._send(h, 404, status(404, "NotFound", "the server could not find the "
                                                              "requested resource"))
        query = dict(urllib.parse.parse_qsl(url.query))
        body = self.page_body if self.page_body is not None else json.dumps(
            self._page(query)).encode()
        self._send(h, 200, body)

    def _page(self, query: dict[str, str]) -> dict[str, Any]:
        items = self.doc.get("items") or []
        try:
            start = int(base64.urlsafe_b64decode(query.get("continue", "MA==")))
        except ValueError:  # a token this server did not make (stuck_continue)
            start = 0
        limit = int(query.get("limit", "0")) or len(items)
        end = min(len(items), start + limit)
        meta: dict[str, Any] = {"resourceVersion": self.doc.get("metadata", {}).get(
            "resourceVersion", "1")}
        if self.stuck_continue is not None:
            meta["continue"] = self.stuck_continue
        elif end < len(items):
            meta["continue"] = base64.urlsafe_b64encode(str(end).encode()).decode()
            if self.remaining_count:
                meta["remainingItemCount"] = len(items) - end
        return {"kind": self.doc.get("kind"), "apiVersion": self.doc.get("apiVersion"),
                "metadata": meta, "items": items[start:end]}

    def _send(self, h: BaseHTTPRequestHandler, code: int, body: bytes) -> None:
        if self.trickle:
            head = (f"HTTP/1.1 {code} OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            try:
                for i in range(len(head) + len(body)):
                    h.wfile.write((head + body)[i:i + 1])
                    h.wfile.flush()
                    time.sleep(self.trickle)
            except OSError:  # the client gave up: what the test wants to see
                pass
            h.close_connection = True
            return
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


def listen_in_namespace(netns_name: str) -> socket.socket:
    """A TCP socket listening on 127.0.0.1 (any port) inside ``/run/netns/<netns_name>``.

    Made in a short-lived thread that enters the namespace, so the caller's thread never
    changes namespace; the socket keeps the namespace it was made in.
    """
    from pyroute2 import netns as pyroute2_netns

    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            fd = os.open(f"/run/netns/{netns_name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                pyroute2_netns.setns(fd, flags=0)
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            made.append(s)
        except BaseException as err:  # handed to the caller
            failed.append(err)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout=10)
    if failed:
        raise failed[0]
    if not made:
        raise TimeoutError(f"could not open a socket in {netns_name} in 10 s")
    return made[0]
