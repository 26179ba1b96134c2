"""The cluster source against a fake API server on 127.0.0.1 (no root needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit.fakeapi import FakeAPI
from labkit.overlay import node_list

from netagent.config import ClusterConfig
from netagent.errors import SourceError
from netagent.model import ClusterInfo
from netagent.parse.kube import ACCEPT_METADATA
from netagent.sources.cluster import JITTER, ClusterSource

TOKEN = "eyJhbGciOiJSUzI1NiJ9.netagent-test"


def kubeconfig(tmp_path: Path, server: str, *, token: str | None = TOKEN,
               extra_cluster: str = "", extra_user: str = "") -> Path:
    path = tmp_path / "kubeconfig"
    user = f"    token: {token}\n" if token else "    {}\n"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        "contexts:\n- name: t\n  context: {cluster: c, user: u}\n"
        f"clusters:\n- name: c\n  cluster:\n    server: {server}\n{extra_cluster}"
        f"users:\n- name: u\n  user:\n{user}{extra_user}")
    return path


def source(path: Path, *, peers: bool = False, nodes: int | None = None,
           timeout: float = 5.0, clock: list[float] | None = None,
           rand: float = 0.5, real_clock: bool = False) -> ClusterSource:
    now = clock if clock is not None else [1000.0]
    return ClusterSource(ClusterConfig(kubeconfig=str(path), api_timeout_seconds=timeout),
                         nodes=nodes, peers=peers, env={}, service_account_dir="/nonexistent",
                         clock=time.monotonic if real_clock else lambda: now[0],
                         rand=lambda: rand)


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with FakeAPI(node_list(605), token=TOKEN) as server:
        yield server


def test_count_is_one_request_with_remaining_item_count(api: FakeAPI, tmp_path: Path) -> None:
    src = source(kubeconfig(tmp_path, api.url))
    info = src.collect()
    assert info.nodes == 605 and info.peers is None
    assert info.source.startswith(f"Kubernetes API {api.url} (kubeconfig ")
    assert src.requests == 1
    path, headers = api.requests[0]
    assert path == "/api/v1/nodes?limit=1"
    assert headers["Accept"] == ACCEPT_METADATA
    assert headers["Authorization"] == f"Bearer {TOKEN}"


def test_old_server_without_remaining_count_is_paged(api: FakeAPI, tmp_path: Path) -> None:
    api.remaining_count = False
    src = source(kubeconfig(tmp_path, api.url))
    assert src.collect().nodes == 605
    paths = [p for p, _ in api.requests]
    # limit=1, then six pages of 100 (the last of 4) through continue tokens
    assert paths[0] == "/api/v1/nodes?limit=1"
    assert len(paths) == 8 and all("limit=100&continue=" in p for p in paths[1:])


def test_peers_read_from_every_page(api: FakeAPI, tmp_path: Path) -> None:
    src = source(kubeconfig(tmp_path, api.url), peers=True)
    info = src.collect()
    assert info.nodes == 605 and info.peers is not None and len(info.peers) == 605
    assert info.peers[3].name == "node-0003"
    assert info.peers[3].flannel_vtep_mac == "02:0a:58:00:00:03"
    assert info.peers[3].flannel_public_ip == "192.168.0.4"
    paths = [p for p, _ in api.requests]
    assert paths[0] == "/api/v1/nodes?limit=100&resourceVersion=0"
    assert len(paths) == 7 and all(p.startswith("/api/v1/nodes?limit=100&continue=")
                                   for p in paths[1:])


@pytest.mark.parametrize("fixture, code, message", [
    ("status-401.json", 401, "HTTP 401: Unauthorized"),
    ("status-403.json", 403, "HTTP 403: Forbidden: nodes is forbidden"),
    ("status-500.json", 500, "HTTP 500: InternalError: Internal error occurred"),
])
def test_api_errors_carry_the_status_message(api: FakeAPI, tmp_path: Path, fixtures: Path,
                                             fixture: str, code: int, message: str) -> None:
    api.fail = (code, (fixtures / "kube" / fixture).read_bytes())
    with pytest.raises(SourceError, match=message):
        source(kubeconfig(tmp_path, api.url)).collect()


def test_wrong_token_is_unauthorized(api: FakeAPI, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"/api/v1/nodes: HTTP 401: Unauthorized"):
        source(kubeconfig(tmp_path, api.url, token="wrong")).collect()


def test_slow_answer_hits_the_timeout(api: FakeAPI, tmp_path: Path) -> None:
    api.delay = 1.5
    src = source(kubeconfig(tmp_path, api.url), timeout=0.3)
    start = time.monotonic()
    with pytest.raises(SourceError, match=r"no answer in 0.3 s"):
        src.collect()
    assert time.monotonic() - start < 1.4


def test_refused_connection(tmp_path: Path) -> None:
    with FakeAPI(node_list(1)) as dead:
        url = dead.url  # the port is closed once the server stops
    with pytest.raises(SourceError, match="connection refused"):
        source(kubeconfig(tmp_path, url)).collect()


def test_failure_falls_back_to_configured_count(api: FakeAPI, tmp_path: Path,
                                                fixtures: Path) -> None:
    api.fail = (403, (fixtures / "kube" / "status-403.json").read_bytes())
    info = source(kubeconfig(tmp_path, api.url), nodes=41).collect()
    assert (info.nodes, info.source) == (41, "configuration")
    assert "Kubernetes API not used:" in info.note and "Forbidden" in info.note


def test_polls_at_most_once_per_poll_seconds_with_jitter(api: FakeAPI, tmp_path: Path) -> None:
    now = [1000.0]
    src = source(kubeconfig(tmp_path, api.url), clock=now, rand=1.0)
    first = src.collect()
    due = 300 * (1 + JITTER * 1.0)
    now[0] += due - 1
    assert src.collect() is first and src.sample() is first
    assert src.requests == 1
    now[0] += 2
    src.collect()
    assert src.requests == 2


def test_failures_are_not_retried_at_once(api: FakeAPI, tmp_path: Path, fixtures: Path) -> None:
    now = [1000.0]
    api.fail = (500, (fixtures / "kube" / "status-500.json").read_bytes())
    src = source(kubeconfig(tmp_path, api.url), clock=now, rand=0.0)
    with pytest.raises(SourceError, match="HTTP 500"):
        src.collect()
    now[0] += 30
    with pytest.raises(SourceError, match=r"HTTP 500.*next attempt in 270 s"):
        src.collect()
    assert len(api.requests) == 1
    api.fail = None
    now[0] += 271
    assert src.collect().nodes == 605


def test_no_credentials_uses_configuration_or_says_what_is_missing() -> None:
    bare = ClusterSource(ClusterConfig(), nodes=None, env={},
                         service_account_dir="/nonexistent")
    with pytest.raises(SourceError,
                       match=r"^no Kubernetes credentials: no in-cluster service account.*"
                             r"no --nodes"):
        bare.collect()
    info = ClusterSource(ClusterConfig(), nodes=12, env={},
                         service_account_dir="/nonexistent").collect()
    assert info == ClusterInfo(nodes=12, source="configuration", note="no Kubernetes credentials")


def test_in_cluster_service_account(api: FakeAPI, tmp_path: Path, certs: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(TOKEN + "\n")
    host, port = api.url.removeprefix("http://").split(":")
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    src = ClusterSource(ClusterConfig(), env=env, service_account_dir=str(sa))
    target = src.target()
    assert target is not None and target.origin == "in-cluster service account"
    assert target.server == f"https://{host}:{port}"
    with pytest.raises(SourceError, match=f"CA file {sa / 'ca.crt'} not found"):
        src.collect()
    shutil.copy(certs / "server.crt", sa / "ca.crt")
    # the fake server speaks plain HTTP: the TLS handshake fails, and the error says TLS
    with pytest.raises(SourceError, match=r"/api/v1/nodes: TLS: "):
        ClusterSource(ClusterConfig(), env=env, service_account_dir=str(sa)).collect()


def test_kubeconfig_from_environment(api: FakeAPI, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, api.url)
    src = ClusterSource(ClusterConfig(), env={"KUBECONFIG": f"/nonexistent:{path}"},
                        service_account_dir="/nonexistent")
    assert src.collect().nodes == 605


def test_missing_kubeconfig_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="kubeconfig not found"):
        source(tmp_path / "nope").collect()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "server.key"), "-out", str(d / "server.crt")],
                   check=True, capture_output=True, timeout=60)
    return d


def test_tls_with_the_cluster_ca(certs: Path, tmp_path: Path) -> None:
    with FakeAPI(node_list(7), token=TOKEN, certfile=str(certs / "server.crt"),
                 keyfile=str(certs / "server.key")) as tls:
        good = kubeconfig(tmp_path, tls.url,
                          extra_cluster=f"    certificate-authority: {certs / 'server.crt'}\n")
        assert source(good).collect().nodes == 7
        (tmp_path / "other").mkdir()
        unverified = kubeconfig(tmp_path / "other", tls.url)
        with pytest.raises(SourceError, match="TLS: CERTIFICATE_VERIFY_FAILED"):
            source(unverified).collect()
        (tmp_path / "insecure").mkdir()
        insecure = kubeconfig(tmp_path / "insecure", tls.url,
                              extra_cluster="    insecure-skip-tls-verify: true\n")
        assert source(insecure).collect().nodes == 7


def test_node_list_json_is_a_real_metadata_list_shape() -> None:
    doc = node_list(3, absent=[1], extra=[9])
    assert doc["kind"] == "PartialObjectMetadataList"
    assert [i["metadata"]["name"] for i in doc["items"]] == ["node-0000", "node-0002",
                                                             "node-0009"]
    data = json.loads(doc["items"][0]["metadata"]["annotations"][
        "flannel.alpha.coreos.com/backend-data"])
    assert data == {"VNI": 1, "VtepMAC": "02:0a:58:00:00:00"}


# --- hardening ------------------------------------------------------------------------------

def test_a_trickling_server_cannot_hold_a_request_past_the_timeout(api: FakeAPI,
                                                                   tmp_path: Path) -> None:
    # one byte every 50 ms: each read is quick, the answer never complete within 0.5 s
    api.trickle = 0.05
    src = source(kubeconfig(tmp_path, api.url), timeout=0.5, real_clock=True)
    start = time.monotonic()
    with pytest.raises(SourceError, match=r"no answer in 0.5 s"):
        src.collect()
    assert time.monotonic() - start < 1.5


def test_a_trickling_tls_handshake_is_bounded(tmp_path: Path) -> None:
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:  # accepts, then answers the ClientHello one byte at a time
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            while not stop.wait(0.05):
                try:
                    conn.send(b"\x16")
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    src = source(kubeconfig(tmp_path, f"https://127.0.0.1:{port}",
                            extra_cluster="    insecure-skip-tls-verify: true\n"), timeout=0.5,
                 real_clock=True)
    start = time.monotonic()
    try:
        with pytest.raises(SourceError, match=r"no answer in 0.5 s|TLS"):
            src.collect()
        assert time.monotonic() - start < 1.5
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=2)


def test_a_continue_token_that_repeats_is_a_loop(api: FakeAPI, tmp_path: Path) -> None:
    api.remaining_count = False
    api.stuck_continue = "c2FtZQ=="
    src = source(kubeconfig(tmp_path, api.url))
    with pytest.raises(SourceError, match="same continue token twice"):
        src.collect()
    assert src.requests == 2


def test_distinct_tokens_for_ever_are_capped_by_the_largest_cluster(tmp_path: Path) -> None:
    from netagent.sources.cluster import MAX_PAGES

    with FakeAPI(node_list(100), token=TOKEN, remaining_count=False) as api:
        counter = iter(range(10**6))
        original = api._page

        def endless(query: dict[str, str]) -> dict[str, object]:
            page = original({k: v for k, v in query.items() if k != "continue"})
            page["metadata"]["continue"] = f"t{next(counter)}"  # type: ignore[index]
            return page

        api._page = endless  # type: ignore[method-assign]
        src = source(kubeconfig(tmp_path, api.url), peers=True)
        with pytest.raises(SourceError, match="more than 50,000 nodes"):
            src.collect()
        assert src.requests <= MAX_PAGES


def test_pages_are_small(api: FakeAPI, tmp_path: Path) -> None:
    info = source(kubeconfig(tmp_path, api.url), peers=True).collect()
    assert info.nodes == 605 and len(info.peers or ()) == 605
    limits = {dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(p).query))["limit"]
              for p, _ in api.requests}
    assert limits == {"100"} and len(api.requests) == 7


def test_a_bug_in_the_source_waits_out_the_poll_interval(api: FakeAPI, tmp_path: Path) -> None:
    now = [1000.0]
    api.page_body = b'{"kind": "NodeList", "items": []}'
    src = source(kubeconfig(tmp_path, api.url), clock=now, rand=0.0)

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    src._list = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(KeyError):
        src.collect()
    for _ in range(9):  # 9 more intervals of 30 s: no new attempt, a SourceError each time
        now[0] += 29
        with pytest.raises(SourceError, match=r"a bug.*next attempt in"):
            src.collect()
    now[0] += 300 - 9 * 29
    with pytest.raises(KeyError):
        src.collect()


def test_an_in_cluster_port_that_is_not_a_port(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    src = ClusterSource(ClusterConfig(), env={"KUBERNETES_SERVICE_HOST": "10.0.0.1",
                                              "KUBERNETES_SERVICE_PORT": "99999"},
                        service_account_dir=str(tmp_path))
    with pytest.raises(SourceError, match="server"):
        src.collect()


def test_a_token_file_with_a_line_break_inside(api: FakeAPI, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\r\nX-Evil: 1\n")
    (tmp_path / "ca.crt").write_text("")
    src = ClusterSource(ClusterConfig(), env={"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                              "KUBERNETES_SERVICE_PORT": "1"},
                        service_account_dir=str(tmp_path))
    with pytest.raises(SourceError):
        src.collect()
