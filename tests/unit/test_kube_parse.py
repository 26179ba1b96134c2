"""Kubernetes API answers and kubeconfigs: real shapes in, records out."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from netagent.errors import ParseError
from netagent.model import NodePeer
from netagent.parse.kube import (
    error_reason,
    in_cluster_target,
    parse_kubeconfig,
    parse_node_page,
)


def kube(fixtures: Path, name: str) -> bytes:
    return (fixtures / "kube" / name).read_bytes()


def test_metadata_page_counts_remaining_and_reads_flannel_annotations(fixtures: Path) -> None:
    page = parse_node_page(kube(fixtures, "metadata-limit1.json"))
    assert page.kind == "PartialObjectMetadataList"
    assert (page.count, page.remaining) == (1, 604)
    assert page.continue_token is not None and page.continue_token.startswith("eyJ2Ijoi")
    assert page.peers == (NodePeer(
        name="ip-10-0-1-17.ec2.internal",
        flannel_public_ip="10.0.1.17",
        flannel_vtep_mac="76:a1:98:8f:f2:6f",  # lower-cased: the kernel prints lower case
        flannel_backend_type="vxlan",
    ),)


def test_full_node_list_with_calico_annotations(fixtures: Path) -> None:
    page = parse_node_page(kube(fixtures, "nodelist-calico.json"))
    assert page.kind == "NodeList"
    assert (page.count, page.remaining, page.continue_token) == (2, None, None)
    first, second = page.peers
    assert first == NodePeer(name="kube01", calico_ipv4_address="192.168.64.6",
                             calico_vxlan_tunnel_addr="10.233.72.128",
                             calico_vxlan_mac="66:d5:3a:10:9c:2e")
    assert second == NodePeer(name="kube02")


def test_empty_list_serialised_as_null(fixtures: Path) -> None:
    page = parse_node_page(kube(fixtures, "metadata-empty.json"))
    assert (page.count, page.peers, page.continue_token) == (0, (), None)


@pytest.mark.parametrize("name, code, expected", [
    ("status-401.json", 401, "HTTP 401: Unauthorized"),
    ("status-403.json", 403, 'HTTP 403: Forbidden: nodes is forbidden: User '
                             '"system:serviceaccount:kube-system:netagent" cannot list resource'),
    ("status-500.json", 500, "HTTP 500: InternalError: Internal error occurred: etcdserver"),
    ("status-410.json", 410, "HTTP 410: Expired: The provided continue parameter is too old"),
])
def test_status_bodies_give_the_api_message(fixtures: Path, name: str, code: int,
                                            expected: str) -> None:
    assert error_reason(code, kube(fixtures, name)).startswith(expected)


def test_non_status_error_bodies_are_quoted_briefly() -> None:
    assert error_reason(502, b"<html>502 Bad Gateway</html>") == \
        "HTTP 502: <html>502 Bad Gateway</html>"
    assert error_reason(503, b"") == "HTTP 503"


def test_a_status_where_a_list_was_expected_is_an_error(fixtures: Path) -> None:
    with pytest.raises(ParseError, match="Forbidden: nodes is forbidden"):
        parse_node_page(kube(fixtures, "status-403.json"))


@pytest.mark.parametrize("body, message", [
    (b"<html>", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"kind":"NodeList","items":{}}', "not a list"),
    (b'{"kind":"NodeList","items":[{"metadata":{}}]}', "without metadata.name"),
    (b'{"kind":"NodeList","metadata":{"remainingItemCount":-1},"items":[]}', "not a node count"),
])
def test_malformed_pages_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_node_page(body)


def test_backend_data_that_is_not_json_gives_no_mac() -> None:
    # the shape of a hand-made node in flannel-io/flannel#1122: not valid JSON
    body = (b'{"kind":"NodeList","items":[{"metadata":{"name":"citrixadc","annotations":'
            b'{"flannel.alpha.coreos.com/backend-data":"{VtepMAC:aa:bb:cc:dd:ee}",'
            b'"flannel.alpha.coreos.com/public-ip":"10.1.1.1"}}}]}')
    (peer,) = parse_node_page(body).peers
    assert peer.flannel_vtep_mac is None and peer.flannel_public_ip == "10.1.1.1"


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: {ca}
- name: lab
  cluster:
    server: https://lab.example:6443
    certificate-authority: pki/ca.crt
    insecure-skip-tls-verify: true
contexts:
- name: prod-admin
  context: {{cluster: prod, user: admin}}
- name: lab-agent
  context: {{cluster: lab, user: agent}}
current-context: prod-admin
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
- name: agent
  user:
    token: abc.def
    client-certificate: /etc/netagent/agent.crt
"""


def _kubeconfig() -> str:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()
    return KUBECONFIG.format(ca=b64("-----BEGIN CERTIFICATE-----\nCA\n"),
                             cert=b64("CERT"), key=b64("KEY"))


def test_kubeconfig_current_context_with_inline_data() -> None:
    target = parse_kubeconfig([("/home/a/.kube/config", _kubeconfig())])
    assert target.server == "https://10.0.0.1:6443"
    assert target.origin == "kubeconfig /home/a/.kube/config (context prod-admin)"
    assert target.ca_data == "-----BEGIN CERTIFICATE-----\nCA\n"
    assert (target.cert_data, target.key_data) == (b"CERT", b"KEY")
    assert target.token is None and not target.insecure


def test_kubeconfig_named_context_resolves_relative_paths() -> None:
    target = parse_kubeconfig([("/etc/k/config", _kubeconfig())], context="lab-agent")
    assert target.server == "https://lab.example:6443"
    assert target.ca_file == "/etc/k/pki/ca.crt"
    assert target.cert_file == "/etc/netagent/agent.crt"
    assert target.token == "abc.def" and target.insecure


def test_kubeconfig_files_merge_first_wins() -> None:
    override = "current-context: lab-agent\nclusters:\n- name: lab\n  cluster:\n" \
               "    server: http://127.0.0.1:8001\n"
    target = parse_kubeconfig([("/a", override), ("/b", _kubeconfig())])
    assert target.server == "http://127.0.0.1:8001" and target.token == "abc.def"


@pytest.mark.parametrize("text, message", [
    ("clusters: []\n", "no current-context"),
    ("current-context: x\n", "context 'x' not found"),
    ("current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n", "cluster 'k'"),
    ("current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n"
     "clusters:\n- name: k\n  cluster: {server: 'https://h'}\n"
     "users:\n- name: u\n  user:\n    exec: {command: aws}\n",
     "exec apiVersion '' is not one netagent speaks"),
    ("current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n"
     "clusters:\n- name: k\n  cluster: {server: 'https://h'}\n"
     "users:\n- name: u\n  user:\n    auth-provider: {name: gcp}\n",
     "'auth-provider'"),
    ("current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n"
     "clusters:\n- name: k\n  cluster: {server: 'ftp://h'}\n", "must be an http\\(s\\) URL"),
    ("- a list\n", "must be a mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_kubeconfigs_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_kubeconfig([("/k", text)])


def test_in_cluster_target_brackets_ipv6() -> None:
    t = in_cluster_target(host="fd00::1", port="443", token_file="/t", ca_file="/c")
    assert t.server == "https://[fd00::1]:443" and t.token_file == "/t"


def test_dual_stack_and_host_gw_flannel_annotations() -> None:
    # shapes seen on real nodes: dual-stack VXLAN, and k3s with the host-gw backend ("null")
    body = json.dumps({"kind": "PartialObjectMetadataList", "items": [
        {"metadata": {"name": "dual", "annotations": {
            "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"12:62:b6:2a:21:cf"}',
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/backend-v6-data": '{"VNI":1,"VtepMAC":"ba:5d:da:3f:78:e1"}',
            "flannel.alpha.coreos.com/public-ip": "1.1.33.34",
            "flannel.alpha.coreos.com/public-ipv6": "2003:ac18::30a:2"}}},
        {"metadata": {"name": "orbstack", "annotations": {
            "flannel.alpha.coreos.com/backend-data": "null",
            "flannel.alpha.coreos.com/backend-type": "host-gw",
            "flannel.alpha.coreos.com/backend-v6-data": "null",
            "flannel.alpha.coreos.com/public-ip": "192.168.139.2",
            "flannel.alpha.coreos.com/public-ipv6": "fd07:b51a:cc66::2"}}},
    ]})
    dual, host_gw = parse_node_page(body).peers
    assert (dual.flannel_vtep_mac, dual.flannel_vtep_mac_v6) == ("12:62:b6:2a:21:cf",
                                                                 "ba:5d:da:3f:78:e1")
    assert dual.flannel_public_ipv6 == "2003:ac18::30a:2"
    assert (host_gw.flannel_vtep_mac, host_gw.flannel_vtep_mac_v6) == (None, None)
    assert host_gw.flannel_backend_type == "host-gw"


# --- hardening: each case once crashed, or was silently accepted ---------------------------

_CTX = "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n"


@pytest.mark.parametrize("value", ['"false"', '"true"', "'no'", "yes", "1", "[]"])
def test_insecure_skip_tls_verify_must_be_a_real_boolean(value: str) -> None:
    # bool("false") is True: a quoted "false" used to switch TLS verification off
    text = _CTX + f"clusters:\n- name: k\n  cluster:\n    server: https://h\n" \
                  f"    insecure-skip-tls-verify: {value}\n"
    with pytest.raises(ParseError, match="'insecure-skip-tls-verify' must be true or false"):
        parse_kubeconfig([("/k", text)])


def test_insecure_skip_tls_verify_false_keeps_verification() -> None:
    text = _CTX + "clusters:\n- name: k\n  cluster:\n    server: https://h\n" \
                  "    insecure-skip-tls-verify: false\n"
    assert parse_kubeconfig([("/k", text)]).insecure is False


@pytest.mark.parametrize("data, message", [
    ("not*base64!", "'certificate-authority-data' is not valid base64"),
    (base64.b64encode(b"\xff\xfe binary").decode(), "does not decode to PEM"),
    (base64.b64encode(b"just text").decode(), "holds no PEM certificate"),
])
def test_certificate_authority_data_must_be_a_pem_certificate(data: str, message: str) -> None:
    # an invalid CA used to fall back silently to the system trust store
    text = _CTX + f"clusters:\n- name: k\n  cluster:\n    server: https://h\n" \
                  f"    certificate-authority-data: '{data}'\n"
    with pytest.raises(ParseError, match=message):
        parse_kubeconfig([("/k", text)])


def test_wrapped_base64_is_accepted() -> None:
    pem = "-----BEGIN CERTIFICATE-----\n" + "A" * 120 + "\n"
    b64 = base64.encodebytes(pem.encode()).decode()  # wrapped at 76 characters
    text = _CTX + "clusters:\n- name: k\n  cluster:\n    server: https://h\n" \
                  "    certificate-authority-data: |\n" + \
                  "".join(f"      {line}\n" for line in b64.splitlines())
    assert parse_kubeconfig([("/k", text)]).ca_data == pem


@pytest.mark.parametrize("server, message", [
    ("https://127.0.0.1:99999", "not a valid URL"),
    ("https://127.0.0.1:abc", "not a valid URL"),
    ("http://[::1", "not a valid URL"),
    ("https://:443", "has no host"),
    ("https://h:0", "port 0"),
])
def test_servers_that_cannot_be_connected_to_are_errors(server: str, message: str) -> None:
    text = _CTX + f"clusters:\n- name: k\n  cluster:\n    server: '{server}'\n"
    with pytest.raises(ParseError, match=message):
        parse_kubeconfig([("/k", text)])


def test_a_token_with_a_line_break_is_an_error() -> None:
    text = ("current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n"
            "clusters:\n- name: k\n  cluster: {server: 'https://h'}\n"
            'users:\n- name: u\n  user: {token: "abc\\r\\nX-Evil: 1"}\n')
    with pytest.raises(ParseError, match="'token' holds control characters"):
        parse_kubeconfig([("/k", text)])


@pytest.mark.parametrize("text, message", [
    ("current-context: c\ncontexts:\n- name: c\n  context: {cluster: [a, b]}\n",
     "'cluster' must be a name"),
    ("current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: {a: 1}}\n",
     "'user' must be a name"),
    ("current-context: [c]\n", "'current-context' must be a string"),
    ("clusters: 7\n", "'clusters' must be a list"),
    ("a: &x [1]\nb: *x\n", "aliases"),
])
def test_kubeconfig_shapes_that_crashed(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_kubeconfig([("/k", text)])


@pytest.mark.parametrize("value", ["true", "1e320", "1" + "0" * 320, "-1", "2000000", '"5"'])
def test_remaining_item_count_must_be_a_count_in_range(value: str) -> None:
    body = '{"kind":"NodeList","metadata":{"remainingItemCount":' + value + '},"items":[]}'
    with pytest.raises(ParseError, match="remainingItemCount"):
        parse_node_page(body)


def test_deeply_nested_answers_are_errors_not_crashes() -> None:
    body = '{"kind":"NodeList","items":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ParseError, match="nested too deeply"):
        parse_node_page(body)
    assert "HTTP 500" in error_reason(500, body.encode())


EKS = """\
current-context: eks
contexts:
- name: eks
  context: {cluster: eks, user: eks}
clusters:
- name: eks
  cluster: {server: 'https://ABC.gr7.eu-west-1.eks.amazonaws.com'}
users:
- name: eks
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: ./bin/aws
      args: [--region, eu-west-1, eks, get-token, --cluster-name, prod]
      env:
      - {name: AWS_PROFILE, value: prod}
      interactiveMode: IfAvailable
      provideClusterInfo: false
"""


def test_exec_plugins_as_eks_writes_them() -> None:
    from netagent.parse.kube import parse_exec_credential

    target = parse_kubeconfig([("/home/op/.kube/config", EKS)])
    plugin = target.exec_plugin
    assert plugin is not None
    assert plugin.command == "/home/op/.kube/bin/aws"  # relative to the kubeconfig
    assert plugin.args[-1] == "prod" and plugin.env == (("AWS_PROFILE", "prod"),)
    # what `aws eks get-token` prints
    printed = json.dumps({"kind": "ExecCredential",
                          "apiVersion": "client.authentication.k8s.io/v1beta1", "spec": {},
                          "status": {"expirationTimestamp": "2026-12-02T11:14:00Z",
                                     "token": "k8s-aws-v1.aHR0cHM6Ly9zdHM"}})
    cred = parse_exec_credential(printed, plugin)
    assert cred.token == "k8s-aws-v1.aHR0cHM6Ly9zdHM"
    assert cred.expires == "2026-12-02T11:14:00Z"
    for bad, message in (("not json", "did not print JSON"),
                         (json.dumps({"kind": "ExecCredential", "apiVersion":
                                      "client.authentication.k8s.io/v1", "status": {}}),
                          "answered 'client.authentication.k8s.io/v1'"),
                         (json.dumps({"kind": "ExecCredential", "apiVersion":
                                      plugin.api_version, "status": {}}),
                          "neither a token")):
        with pytest.raises(ParseError, match=message):
            parse_exec_credential(bad, plugin)
