"""`netagent fleet` when Prometheus is down, slow, failing or talking nonsense: exit 3, one
line naming the URL and the reason, in bounded time. And the parser and the queries."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from netagent import cli
from netagent.errors import ParseError
from netagent.fleet import gather, stats
from netagent.parse import prometheus

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextlib.contextmanager
def serving(handle: Handler) -> Iterator[str]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def answer(status: int, body: bytes, *, delay: float = 0.0) -> Handler:
    def handle(req: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(delay)
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        with contextlib.suppress(OSError):
            req.wfile.write(body)
    return handle


def run_fleet(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, float]:
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["fleet", "--prometheus", url, "--timeout", "1", *args])
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.err.strip(), time.monotonic() - start


EMPTY = json.dumps({"status": "success",
                    "data": {"resultType": "vector", "result": []}}).encode()


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_down(capsys: pytest.CaptureFixture[str]) -> None:
    url = closed_port()
    code, err, took = run_fleet(url, capsys)
    assert (code, err) == (3, f"netagent: {url}/api/v1/query: connection refused")
    assert took < 5


@pytest.mark.parametrize(("status", "body", "reason"), [
    (500, b"upstream exploded", "HTTP 500: upstream exploded"),
    (503, json.dumps({"status": "error", "errorType": "unavailable",
                      "error": "TSDB not ready"}).encode(),
     "HTTP 503: query failed: unavailable: TSDB not ready"),
    (200, b"<html>login</html>", "not JSON (<html>login</html>)"),
    (200, b"{\"status\": \"success\", \"data\": {\"resultType\": \"matrix\", \"result\": []}}",
     "resultType is 'matrix', not 'vector'"),
    (200, EMPTY, "no netagent series match netagent_neighbour_gc_entries{job=\"netagent\"}"),
])
def test_an_answer_that_is_not_data(capsys: pytest.CaptureFixture[str], status: int,
                                    body: bytes, reason: str) -> None:
    with serving(answer(status, body)) as url:
        code, err, took = run_fleet(url, capsys)
    assert code == 3 and err.startswith(f"netagent: {url}") and reason in err, err
    assert "\n" not in err and took < 5


def test_slow_past_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(answer(200, EMPTY, delay=4)) as url:
        code, err, took = run_fleet(url, capsys)
    assert (code, err) == (3, f"netagent: {url}/api/v1/query: no answer in 1 s")
    assert took < 3


def test_credentials_are_sent(capsys: pytest.CaptureFixture[str], tmp_path: Any,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handle(req: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(req.headers.get("Authorization"))
        answer(200, EMPTY)(req)

    token = tmp_path / "token"
    token.write_text("s3cret\n")
    monkeypatch.setenv("NETAGENT_PROMETHEUS_PASSWORD", "pw")
    with serving(handle) as url:
        run_fleet(url, capsys, "--bearer-token-file", str(token))
        run_fleet(url, capsys, "--user", "ops")
    assert seen == ["Bearer s3cret"] * 2 + ["Basic b3BzOnB3"] * 2  # base64("ops:pw")


def test_without_scipy_it_says_how_to_install_it(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise ImportError("No module named 'scipy'")

    monkeypatch.setattr(stats, "student_t_isf", missing)
    code, err, _ = run_fleet(closed_port(), capsys)
    assert code == 3 and "pip install 'netagent[fleet]'" in err


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--window", "ten minutes"], ["--selector", "job=netagent"],
                 ["--node-label", "node name"]):
        code, err, _ = run_fleet(closed_port(), capsys, *args)
        assert code == 3 and "connection refused" not in err, (args, err)


def test_the_parser() -> None:
    ok = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"instance": "a"}, "value": [1.5, "NaN"]},
        {"metric": {"instance": "b"}, "value": [1.5, "2"]}]}}
    samples = prometheus.vector(json.dumps(ok).encode())
    assert [s.labels["instance"] for s in samples] == ["a", "b"] and samples[1].value == 2
    for bad, why in (
            ({"status": "success", "data": {"resultType": "vector",
                                             "result": [{"value": [1, 2]}]}}, "value"),
            ({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"a": 1}, "value": [1, "2"]}]}}, "metric"),
            ({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {}, "values": [[2, "1"], [1, "1"]]}]}}, "time order"),
            ([], "not a JSON object")):
        with pytest.raises(ParseError, match=why):
            (prometheus.matrix if why == "time order" else prometheus.vector)(
                json.dumps(bad).encode())


def test_queries_carry_the_selector_and_the_node_label() -> None:
    q = gather.Queries('{job="netagent", cluster=~"prod-.*"}', node_label="node",
                       window=3600, horizon=86400)
    instant = q.instant()
    assert instant["neighbour_limit"] == (
        'max by (node, family) (netagent_neighbour_gc_thresh{job="netagent", '
        'cluster=~"prod-.*", level="3"})')
    assert instant["neighbour_trend"].endswith("[3600s], 86400))")
    assert gather.Queries("{}", node_label="instance", window=60, horizon=60).sel(
        "x") == "x{}"
    assert gather.parse_duration("1h30m") == 5400 and gather.parse_duration("2d") == 172800
    for bad in ("", "0s", "1y", "-1h"):
        with pytest.raises(ValueError):
            gather.parse_duration(bad)


def test_an_answer_too_large_is_refused(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from netagent.sources import prometheus as client

    monkeypatch.setattr(client, "MAX_BODY", 1 << 20)
    with serving(answer(200, b" " * (3 << 20))) as url:
        code, err, _ = run_fleet(url, capsys)
    assert (code, err) == (3, f"netagent: {url}/api/v1/query: answer larger than 1 MB")
