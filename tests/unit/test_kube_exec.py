"""kubeconfig ``exec`` credential plugins, run for real: a small program written by the test
prints an ``ExecCredential`` the way ``aws eks get-token`` and ``gke-gcloud-auth-plugin`` do,
and the client sends its token to the in-test API server (which refuses any other).

Checks the contract of client-go's exec authenticator that netagent follows: the plugin gets
``KUBERNETES_EXEC_INFO`` and the kubeconfig's ``env``; its credential is reused until a minute
before ``expirationTimestamp`` (for ever without one) and dropped on a 401; a plugin that is
missing, fails, hangs or prints nonsense is a ``SourceError`` naming the plugin.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit.fakeapi import FakeAPI
from labkit.overlay import node_list

from netagent.config import ClusterConfig
from netagent.errors import SourceError
from netagent.sources import kubeapi
from netagent.sources.cluster import ClusterSource
from netagent.sources.kubeapi import KubeClient, resolve_target

TOKEN = "k8s-aws-v1.aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbQ"
V1BETA1 = "client.authentication.k8s.io/v1beta1"

# The plugin: counts its runs, keeps what it was given, prints the credential the test set.
PLUGIN = """#!/bin/sh
dir=$(dirname "$0")
echo run >> "$dir/runs"
printf '%s' "$KUBERNETES_EXEC_INFO" > "$dir/exec-info"
printf '%s' "$AWS_PROFILE" > "$dir/profile"
[ -f "$dir/stderr" ] && cat "$dir/stderr" >&2
[ -f "$dir/sleep" ] && sleep "$(cat "$dir/sleep")"
[ -f "$dir/exit" ] && exit "$(cat "$dir/exit")"
cat "$dir/credential"
"""


class Plugin:
    def __init__(self, root: Path) -> None:
        self.dir = root / "bin"
        self.dir.mkdir()
        self.path = self.dir / "get-token"
        self.path.write_text(PLUGIN)
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)
        self.credential(TOKEN)

    def credential(self, token: str, *, expires: datetime.datetime | None = None,
                   api_version: str = V1BETA1) -> None:
        status: dict[str, str] = {"token": token}
        if expires is not None:
            status["expirationTimestamp"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
        (self.dir / "credential").write_text(json.dumps(
            {"kind": "ExecCredential", "apiVersion": api_version, "spec": {},
             "status": status}))

    def set(self, name: str, value: str) -> None:
        (self.dir / name).write_text(value)

    @property
    def runs(self) -> int:
        runs = self.dir / "runs"
        return len(runs.read_text().splitlines()) if runs.exists() else 0


def kubeconfig(root: Path, server: str, command: str = "./bin/get-token") -> Path:
    """As ``aws eks update-kubeconfig`` writes one, the command relative to the file."""
    path = root / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: eks\n"
        f"clusters:\n- name: eks\n  cluster:\n    server: {server}\n"
        "contexts:\n- name: eks\n  context: {cluster: eks, user: eks}\n"
        "users:\n- name: eks\n  user:\n    exec:\n"
        f"      apiVersion: {V1BETA1}\n      command: {command}\n"
        "      args: [--region, eu-west-1, eks, get-token, --cluster-name, prod]\n"
        "      env:\n      - {name: AWS_PROFILE, value: prod}\n"
        "      interactiveMode: IfAvailable\n")
    return path


def client(path: Path, clock: list[float] | None = None) -> KubeClient:
    target = resolve_target(ClusterConfig(kubeconfig=str(path)), env={})
    assert target is not None and target.exec_plugin is not None
    now = clock if clock is not None else [0.0]
    return KubeClient(target, timeout=5.0, clock=lambda: now[0])


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with FakeAPI(node_list(3), token=TOKEN) as server:
        yield server


@pytest.fixture
def plugin(tmp_path: Path) -> Plugin:
    return Plugin(tmp_path)


def test_the_plugins_token_is_sent_and_reused_while_it_is_valid(
        api: FakeAPI, plugin: Plugin, tmp_path: Path) -> None:
    plugin.credential(TOKEN, expires=datetime.datetime.now(datetime.UTC)
                      + datetime.timedelta(minutes=15))
    clock = [100.0]
    c = client(kubeconfig(tmp_path, api.url), clock)
    for _ in range(3):
        c.get("/api/v1/nodes?limit=1", accept="application/json")
    assert plugin.runs == 1  # one run serves every request while the credential is valid
    assert [h.get("Authorization") for _, h in api.requests] == [f"Bearer {TOKEN}"] * 3
    info = json.loads((plugin.dir / "exec-info").read_text())
    assert info == {"kind": "ExecCredential", "apiVersion": V1BETA1,
                    "spec": {"interactive": False}}
    assert (plugin.dir / "profile").read_text() == "prod"  # the kubeconfig's env
    clock[0] += 14 * 60 + 1  # within a minute of expiry: asked again
    c.get("/api/v1/nodes?limit=1", accept="application/json")
    assert plugin.runs == 2


def test_without_an_expiry_the_credential_lasts_until_the_server_refuses_it(
        api: FakeAPI, plugin: Plugin, tmp_path: Path) -> None:
    clock = [0.0]
    c = client(kubeconfig(tmp_path, api.url), clock)
    c.get("/api/v1/nodes?limit=1", accept="application/json")
    clock[0] += 86400
    c.get("/api/v1/nodes?limit=1", accept="application/json")
    assert plugin.runs == 1
    api.token = "rotated"  # the provider rotated it: 401, the cache is dropped
    with pytest.raises(kubeapi.KubeError) as refused:
        c.get("/api/v1/nodes?limit=1", accept="application/json")
    assert refused.value.status == 401
    plugin.credential("rotated")
    c.get("/api/v1/nodes?limit=1", accept="application/json")
    assert plugin.runs == 2
    assert api.requests[-1][1]["Authorization"] == "Bearer rotated"


def test_an_expired_or_unreadable_expiry_runs_the_plugin_every_time(
        api: FakeAPI, plugin: Plugin, tmp_path: Path) -> None:
    plugin.credential(TOKEN, expires=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    c = client(kubeconfig(tmp_path, api.url))
    c.get("/api/v1/nodes?limit=1", accept="application/json")
    c.get("/api/v1/nodes?limit=1", accept="application/json")
    assert plugin.runs == 2


def test_netagent_check_counts_nodes_through_an_exec_plugin(
        api: FakeAPI, plugin: Plugin, tmp_path: Path) -> None:
    source = ClusterSource(ClusterConfig(kubeconfig=str(kubeconfig(tmp_path, api.url)),
                                         api_timeout_seconds=5.0),
                           nodes=None, peers=False, env={},
                           service_account_dir="/nonexistent")
    assert source.collect().nodes == 3
    assert plugin.runs == 1


def test_a_command_on_path_is_found_there(api: FakeAPI, plugin: Plugin, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{plugin.dir}{os.pathsep}{os.environ.get('PATH', '')}")
    c = client(kubeconfig(tmp_path, api.url, command="get-token"))
    c.get("/api/v1/nodes?limit=1", accept="application/json")
    assert plugin.runs == 1


@pytest.mark.parametrize("setup, message", [
    ({"exit": "1", "stderr": "error: expired SSO session\nrun aws sso login\n"},
     r"exec plugin .*get-token exited 1: run aws sso login"),
    ({"credential": "<html>sign in</html>"}, r"get-token did not print JSON"),
    ({"credential": json.dumps({"kind": "ExecCredential", "apiVersion": V1BETA1,
                                "status": {}})}, r"neither a token"),
    ({"sleep": "5"}, r"get-token did not answer in 0.5 s"),
])
def test_a_failing_plugin_is_a_source_error_naming_it(
        api: FakeAPI, plugin: Plugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        setup: dict[str, str], message: str) -> None:
    monkeypatch.setattr(kubeapi, "EXEC_TIMEOUT", 0.5)
    for name, value in setup.items():
        plugin.set(name, value)
    c = client(kubeconfig(tmp_path, api.url))
    with pytest.raises(SourceError, match=message):
        c.get("/api/v1/nodes?limit=1", accept="application/json")
    assert api.requests == []  # nothing was sent without a credential


def test_a_missing_plugin_names_the_command(api: FakeAPI, tmp_path: Path) -> None:
    c = client(kubeconfig(tmp_path, api.url, command="./bin/no-such-plugin"))
    with pytest.raises(SourceError, match=r"exec plugin .*/bin/no-such-plugin not found"):
        c.get("/api/v1/nodes?limit=1", accept="application/json")
