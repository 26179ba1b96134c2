"""A fake Kubernetes API server that serves ``GET /api/v1/nodes`` from a node list document.

Enough of the real thing for netagent's cluster source: ``limit``/``continue`` paging (with
or without ``remainingItemCount``, as servers before 1.15 answer), bearer-token checks with
the API's ``Status`` bodies, injected failures and delays, optional TLS. And for its
Kubernetes reporter: ``GET /api/v1/nodes/<name>``, a strategic-merge ``PATCH`` of
``/api/v1/nodes/<name>/status`` (``status.conditions`` merged by ``type``, as the API's
patchMergeKey says), ``POST /api/v1/namespaces/<ns>/events`` and a strategic-merge
``PATCH`` of one event, with the API's answers (201 with the created Event, 404/415/422
``Status`` bodies). It listens on a
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
        # every PATCH and POST: (method, path, content type, decoded body)
        self.writes: list[tuple[str, str, str, Any]] = []
        self.fail_writes: tuple[int, bytes] | None = None  # answer PATCH and POST with this
        self.fail_events: tuple[int, bytes] | None = None  # answer writes of events with this
        self.nodes: dict[str, dict[str, Any]] = {
            item["metadata"]["name"]: node_object(item) for item in doc.get("items") or []
            if isinstance(item, dict) and item.get("metadata", {}).get("name")}
        self.events: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, name) -> Event
        self._version = 100
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api._handle(self)

            def do_PATCH(self) -> None:
                api._write(self, "PATCH")

            def do_POST(self) -> None:
                api._write(self, "POST")

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
        name = url.path.removeprefix("/api/v1/nodes/")
        if url.path.startswith("/api/v1/nodes/") and "/" not in name:
            with self._lock:
                node = self.nodes.get(name)
            if node is None:
                return self._send(h, 404, status(404, "NotFound", f'nodes "{name}" not found'))
            return self._send(h, 200, json.dumps(node).encode())
        if url.path != "/api/v1/nodes":
            return self._send(h, 404, status(404, "NotFound", "the server could not find the "
                                                              "requested resource"))
        query = dict(urllib.parse.parse_qsl(url.query))
        body = self.page_body if self.page_body is not None else json.dumps(
            self._page(query)).encode()
        self._send(h, 200, body)

    def _write(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        kind = h.headers.get("Content-Type", "")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.writes.append((method, h.path, kind, body))
            self.requests.append((h.path, dict(h.headers)))
        if self.delay:
            time.sleep(self.delay)
        failure = self.fail_writes or self.fail
        if failure is None and "/events" in h.path:
            failure = self.fail_events
        if failure is not None:
            return self._send(h, *failure)
        if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, status(401, "Unauthorized", "Unauthorized"))
        if not isinstance(body, dict):
            return self._send(h, 400, status(400, "BadRequest", "the body is not a JSON "
                                                                "object"))
        if method == "PATCH" and kind != "application/strategic-merge-patch+json":
            return self._send(h, 415, status(415, "UnsupportedMediaType",
                                             f"the body of the request was in an unknown "
                                             f"format - accepted media types include: "
                                             f"application/json-patch+json, application/"
                                             f"merge-patch+json, application/apply-patch+yaml"
                                             f" (sent {kind})"))
        path = urllib.parse.urlsplit(h.path).path
        parts = path.strip("/").split("/")
        with self._lock:
            self._version += 1
            if method == "PATCH" and len(parts) == 5 and parts[:3] == ["api", "v1", "nodes"] \
                    and parts[4] == "status":
                node = self.nodes.get(parts[3])
                if node is None:
                    return self._send(h, 404, status(404, "NotFound",
                                                     f'nodes "{parts[3]}" not found'))
                merge_node_status(node, body)
                node["metadata"]["resourceVersion"] = str(self._version)
                return self._send(h, 200, json.dumps(node).encode())
            if len(parts) >= 5 and parts[:3] == ["api", "v1", "namespaces"] \
                    and parts[4] == "events":
                ns = parts[3]
                if method == "POST" and len(parts) == 5:
                    problem = event_problem(body, ns)
                    if problem:
                        named = (body.get("metadata") or {}).get("name", "")
                        return self._send(h, 422, status(422, "Invalid",
                                                         f'Event "{named}" is invalid: '
                                                         f"{problem}"))
                    event = dict(body)
                    event["metadata"] = {**body["metadata"], "uid": f"ev-{self._version}",
                                         "resourceVersion": str(self._version)}
                    self.events[(ns, body["metadata"]["name"])] = event
                    return self._send(h, 201, json.dumps(event).encode())
                if method == "PATCH" and len(parts) == 6:
                    found = self.events.get((ns, parts[5]))
                    if found is None:
                        return self._send(h, 404, status(404, "NotFound",
                                                         f'events "{parts[5]}" not found'))
                    found.update({k: v for k, v in body.items() if k != "metadata"})
                    return self._send(h, 200, json.dumps(found).encode())
        self._send(h, 404, status(404, "NotFound", "the server could not find the requested "
                                                   "resource"))

    def condition_writes(self) -> list[list[dict[str, Any]]]:
        """The conditions of every PATCH of a node's status, in order."""
        return [body["status"]["conditions"] for method, path, _, body in self.writes
                if method == "PATCH" and path.endswith("/status")]

    def event_writes(self) -> list[tuple[str, dict[str, Any]]]:
        """("POST" or "PATCH", body) of every write to events, in order."""
        return [(method, body) for method, path, _, body in self.writes if "/events" in path]

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


def node_object(item: dict[str, Any]) -> dict[str, Any]:
    """A full Node as ``GET /api/v1/nodes/<name>`` answers, from a list item, with the
    kubelet's own conditions (which netagent must never change)."""
    name = item["metadata"]["name"]
    node: dict[str, Any] = json.loads(json.dumps(item))
    node.update(kind="Node", apiVersion="v1")
    node["metadata"].setdefault("uid", f"uid-{name}")
    node["metadata"].setdefault("resourceVersion", "1")
    status_ = node.setdefault("status", {})
    status_.setdefault("conditions", [
        {"type": t, "status": s, "reason": r, "message": m,
         "lastHeartbeatTime": "2026-12-01T00:00:00Z",
         "lastTransitionTime": "2026-11-01T00:00:00Z"}
        for t, s, r, m in (
            ("MemoryPressure", "False", "KubeletHasSufficientMemory",
             "kubelet has sufficient memory available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"))])
    return node


def merge_node_status(node: dict[str, Any], patch: dict[str, Any]) -> None:
    """A strategic-merge patch of a Node's status: conditions by ``type``, the rest
    replaced key by key."""
    for key, value in (patch.get("status") or {}).items():
        if key != "conditions":
            node["status"][key] = value
            continue
        current = node["status"].setdefault("conditions", [])
        for condition in value:
            for i, old in enumerate(current):
                if old.get("type") == condition.get("type"):
                    current[i] = {**old, **condition}
                    break
            else:
                current.append(condition)


def event_problem(body: dict[str, Any], namespace: str) -> str | None:
    """What the API's validation of a core/v1 Event would refuse, or None."""
    meta, obj = body.get("metadata") or {}, body.get("involvedObject") or {}
    if not meta.get("name"):
        return "metadata.name: Required value: name or generateName is required"
    if meta.get("namespace") not in (None, namespace):
        return "metadata.namespace: Invalid value: does not match the namespace of the URL"
    if not obj.get("kind") or not obj.get("name"):
        return "involvedObject: Required value"
    if body.get("type") not in ("Normal", "Warning"):
        return f"type: Unsupported value: {body.get('type')!r}"
    if not body.get("reason"):
        return "reason: Required value"
    return None


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
