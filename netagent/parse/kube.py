"""Kubernetes API answers and kubeconfig files, parsed without any I/O.

What a person would type to see the same: ``kubectl get nodes -o json`` (the node list),
``kubectl get --raw '/api/v1/nodes?limit=1'`` (a page with ``remainingItemCount``) and
``kubectl config view --minify --raw`` (the credentials in use).
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netagent.config import MAX_NODES
from netagent.errors import ParseError
from netagent.loaders import LoadError, load_yaml, shorten
from netagent.model import NodePeer

# Metadata only: annotations (flannel's peer addresses) without spec and status. The plain
# JSON fallback lets servers that predate metadata-only lists answer with a full NodeList.
ACCEPT_METADATA = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                   "application/json")
NODES_PATH = "/api/v1/nodes"

FLANNEL_PUBLIC_IP = "flannel.alpha.coreos.com/public-ip"
FLANNEL_BACKEND_DATA = "flannel.alpha.coreos.com/backend-data"
FLANNEL_BACKEND_TYPE = "flannel.alpha.coreos.com/backend-type"
FLANNEL_PUBLIC_IPV6 = "flannel.alpha.coreos.com/public-ipv6"
FLANNEL_BACKEND_V6_DATA = "flannel.alpha.coreos.com/backend-v6-data"
# libcalico-go lib/backend/k8s/resources/node.go
CALICO_IPV4_ADDRESS = "projectcalico.org/IPv4Address"
CALICO_VXLAN_TUNNEL_ADDR = "projectcalico.org/IPv4VXLANTunnelAddr"
CALICO_VXLAN_MAC = "projectcalico.org/VXLANTunnelMACAddr"
CALICO_IPV6_ADDRESS = "projectcalico.org/IPv6Address"
CALICO_VXLAN_TUNNEL_ADDR_V6 = "projectcalico.org/IPv6VXLANTunnelAddr"
CALICO_VXLAN_MAC_V6 = "projectcalico.org/VXLANTunnelMACAddrV6"


@dataclass(frozen=True)
class NodePage:
    """One page of ``GET /api/v1/nodes``: its items and how to get the rest."""

    kind: str
    count: int
    peers: tuple[NodePeer, ...]
    continue_token: str | None  # metadata.continue: more pages follow
    remaining: int | None  # metadata.remainingItemCount: absent on old servers


@dataclass(frozen=True)
class KubeTarget:
    """Where the API server is and how to authenticate, from a kubeconfig or a pod."""

    server: str
    origin: str  # "kubeconfig /path (context x)" or "in-cluster service account"
    token: str | None = None
    token_file: str | None = None  # read at every request: projected tokens rotate
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    cert_file: str | None = None
    cert_data: bytes | None = None  # PEM
    key_file: str | None = None
    key_data: bytes | None = None  # PEM
    insecure: bool = False
    exec_plugin: ExecPlugin | None = None  # a credential plugin to run (EKS, GKE)


@dataclass(frozen=True)
class ExecPlugin:
    """A kubeconfig ``user.exec``: a program that prints an ``ExecCredential`` (client-go's
    client-go/plugin/pkg/client/auth/exec; ``aws eks get-token``, ``gke-gcloud-auth-plugin``)."""

    command: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    api_version: str
    where: str  # "kubeconfig /path: user 'x'"


@dataclass(frozen=True)
class ExecCredential:
    """What a plugin printed: a token, or a client certificate and key, and until when."""

    token: str | None
    cert_data: bytes | None
    key_data: bytes | None
    expires: str | None  # status.expirationTimestamp (RFC 3339), None: until it fails


EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


def parse_node_page(body: bytes | str) -> NodePage:
    """A ``NodeList`` or ``PartialObjectMetadataList`` page.

    Both hold each node's ``metadata`` (with its annotations) under ``items``; the list's
    own ``metadata`` carries ``continue`` and, on servers since 1.15, ``remainingItemCount``.
    """
    doc = _json(body)
    kind = doc.get("kind", "")
    if kind == "Status":
        raise ParseError(status_message(doc))
    items = doc.get("items")
    if items is None:
        items = []  # an empty list is serialised as "items": null by some servers
    if not isinstance(items, list):
        raise ParseError(f"a {kind or 'list'} whose 'items' is not a list")
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise ParseError("a list whose 'metadata' is not an object")
    remaining = meta.get("remainingItemCount")
    if remaining is not None and (isinstance(remaining, bool) or not isinstance(remaining, int)
                                  or not 0 <= remaining <= MAX_NODES):
        raise ParseError(f"remainingItemCount {shorten(remaining)} is not a node count "
                           f"(0 to {MAX_NODES:,})")
    token = meta.get("continue") or None
    if token is not None and not isinstance(token, str):
        raise ParseError(f"metadata.continue {shorten(token)} is not a string")
    return NodePage(
        kind=kind,
        count=len(items),
        peers=tuple(node_peer(item) for item in items),
        continue_token=token,
        remaining=remaining,
    )


def node_peer(item: Any) -> NodePeer:
    """The overlay endpoint one node's annotations describe."""
    meta = item.get("metadata") if isinstance(item, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise ParseError("a node without metadata.name")
    notes = meta.get("annotations") or {}
    if not isinstance(notes, dict):
        notes = {}
    return NodePeer(
        name=meta["name"],
        flannel_public_ip=_str(notes, FLANNEL_PUBLIC_IP),
        flannel_vtep_mac=_vtep_mac(notes, FLANNEL_BACKEND_DATA),
        flannel_backend_type=_str(notes, FLANNEL_BACKEND_TYPE),
        calico_ipv4_address=_address(notes, CALICO_IPV4_ADDRESS),
        calico_vxlan_tunnel_addr=_str(notes, CALICO_VXLAN_TUNNEL_ADDR),
        calico_vxlan_mac=_mac(notes, CALICO_VXLAN_MAC),
        flannel_public_ipv6=_str(notes, FLANNEL_PUBLIC_IPV6),
        flannel_vtep_mac_v6=_vtep_mac(notes, FLANNEL_BACKEND_V6_DATA),
        calico_ipv6_address=_address(notes, CALICO_IPV6_ADDRESS),
        calico_vxlan_tunnel_addr_v6=_str(notes, CALICO_VXLAN_TUNNEL_ADDR_V6),
        calico_vxlan_mac_v6=_mac(notes, CALICO_VXLAN_MAC_V6),
    )


def _vtep_mac(notes: Mapping[str, Any], key: str) -> str | None:
    """The VtepMAC of flannel's backend data ("null" for backends without one)."""
    backend = notes.get(key)
    if not isinstance(backend, str):
        return None
    try:
        data = json.loads(backend)
    except ValueError:
        return None
    mac = data.get("VtepMAC") if isinstance(data, dict) else None
    return mac.lower() if isinstance(mac, str) and mac else None


def _address(notes: Mapping[str, Any], key: str) -> str | None:
    """Calico writes node addresses with their prefix length: "192.168.64.6/24"."""
    value = _str(notes, key)
    return value.split("/", 1)[0] if value else None


def _mac(notes: Mapping[str, Any], key: str) -> str | None:
    value = _str(notes, key)
    return value.lower() if value else None


def status_message(doc: Mapping[str, Any]) -> str:
    """The reason a ``Status`` object gives: "Forbidden: nodes is forbidden: ..."."""
    message = doc.get("message")
    message = shorten(message, 300).strip("'\"") if message else "no message"
    if not isinstance(doc.get("message"), str | type(None)):
        message = f"(message not text) {message}"
    reason = doc.get("reason")
    if not isinstance(reason, str) or not reason:
        return message
    return message if reason in message else f"{shorten(reason, 60).strip(chr(39))}: {message}"


def error_reason(code: int, body: bytes) -> str:
    """Why a request failed, from the ``Status`` body when the server sent one."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        return f"HTTP {code}: {status_message(doc)}"
    text = body[:200].decode("utf-8", "replace").strip()
    return f"HTTP {code}" + (f": {text}" if text else "")


def _json(body: bytes | str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as err:  # UnicodeDecodeError included
        raise ParseError(f"not JSON: {err}") from err
    except RecursionError as err:
        raise ParseError("not JSON netagent reads: nested too deeply") from err
    if not isinstance(doc, dict):
        raise ParseError("not a JSON object")
    return doc


def _str(notes: Mapping[str, Any], key: str) -> str | None:
    value = notes.get(key)
    return value if isinstance(value, str) and value else None


# --- credentials --------------------------------------------------------------------------

def in_cluster_target(*, host: str, port: str, token_file: str, ca_file: str) -> KubeTarget:
    """The pod's service account, as client-go's ``rest.InClusterConfig`` reads it."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 service address
    return KubeTarget(server=f"https://{host}:{port}", origin="in-cluster service account",
                      token_file=token_file, ca_file=ca_file)


def parse_kubeconfig(documents: Sequence[tuple[str, str]], *,
                     context: str | None = None) -> KubeTarget:
    """The cluster and user of the current (or given) context of one or more kubeconfigs.

    ``documents`` are ``(path, text)`` in ``KUBECONFIG`` order; as kubectl does, the first
    file to define a name wins and the first ``current-context`` is used. Relative file names
    are relative to the file that holds them.
    """
    clusters: dict[str, tuple[str, dict[str, Any]]] = {}
    users: dict[str, tuple[str, dict[str, Any]]] = {}
    contexts: dict[str, dict[str, Any]] = {}
    current = context
    for path, text in documents:
        try:
            doc = load_yaml(text, where=path) or {}
        except LoadError as err:
            raise ParseError(str(err)) from err
        if not isinstance(doc, dict):
            raise ParseError(f"{path}: a kubeconfig must be a mapping")
        for key, into in (("clusters", clusters), ("users", users)):
            for entry in _named(doc, key, path):
                into.setdefault(entry[0], (path, entry[1]))
        for name, body in _named(doc, "contexts", path):
            contexts.setdefault(name, body)
        if current is None and doc.get("current-context"):
            current = doc["current-context"]
            if not isinstance(current, str):
                raise ParseError(f"{path}: 'current-context' must be a string")
    where = ", ".join(p for p, _ in documents)
    if not current:
        raise ParseError(f"{where}: no current-context")
    if current not in contexts:
        raise ParseError(f"{where}: context '{current}' not found")
    ctx = contexts[current]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    for field_name, value in (("cluster", cluster_name), ("user", user_name)):
        if value is not None and not isinstance(value, str):
            raise ParseError(f"{where}: context '{current}': '{field_name}' must be a name "
                              f"(a string), not {shorten(value)}")
    if cluster_name not in clusters:
        raise ParseError(f"{where}: cluster '{cluster_name}' of context '{current}' not found")
    cpath, cluster = clusters[cluster_name]
    server = _server(cluster.get("server"), where=f"{cpath}: cluster '{cluster_name}'")
    user: dict[str, Any] = {}
    upath = cpath
    if user_name is not None:
        if user_name not in users:
            raise ParseError(f"{where}: user '{user_name}' of context '{current}' not found")
        upath, user = users[user_name]
    if user.get("auth-provider"):
        raise ParseError(f"{upath}: user '{user_name}' authenticates with 'auth-provider' "
                          "(removed from kubectl in 1.26), which netagent does not run: use "
                          "the provider's exec plugin, a token or a client certificate")
    if user.get("username") or user.get("password"):
        raise ParseError(f"{upath}: user '{user_name}': basic authentication is not supported")
    return KubeTarget(
        server=server.rstrip("/"),
        origin=f"kubeconfig {cpath} (context {current})",
        token=_token(user, upath),
        token_file=_path(user, "tokenFile", upath),
        ca_file=_path(cluster, "certificate-authority", cpath),
        ca_data=_pem_text(cluster, "certificate-authority-data", cpath),
        cert_file=_path(user, "client-certificate", upath),
        cert_data=_b64(user, "client-certificate-data", upath),
        key_file=_path(user, "client-key", upath),
        key_data=_b64(user, "client-key-data", upath),
        insecure=_bool(cluster, "insecure-skip-tls-verify", cpath),
        exec_plugin=_exec(user.get("exec"), upath, user_name or ""),
    )


def _exec(section: Any, path: str, user: str) -> ExecPlugin | None:
    """``user.exec`` as kubectl reads it: a command (relative to the kubeconfig's directory
    when it holds a slash, else looked up on PATH), args, env and an apiVersion."""
    if not section:
        return None
    where = f"{path}: user '{user}'"
    if not isinstance(section, dict):
        raise ParseError(f"{where}: 'exec' must be a mapping")
    command = _opt(section, "command", where)
    if not command:
        raise ParseError(f"{where}: 'exec' has no command")
    version = _opt(section, "apiVersion", where) or ""
    if version not in EXEC_API_VERSIONS:
        raise ParseError(f"{where}: exec apiVersion {shorten(version)} is not one netagent "
                          f"speaks ({', '.join(EXEC_API_VERSIONS)})")
    if "/" in command and not command.startswith("/"):
        command = posixpath.normpath(posixpath.join(posixpath.dirname(path), command))
    args = section.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ParseError(f"{where}: exec 'args' must be a list of strings")
    env = []
    for item in section.get("env") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                or not isinstance(item.get("value"), str):
            raise ParseError(f"{where}: exec 'env' entries need a name and a value")
        env.append((item["name"], item["value"]))
    return ExecPlugin(command=command, args=tuple(args), env=tuple(env), api_version=version,
                      where=where)


def parse_exec_credential(text: str, plugin: ExecPlugin) -> ExecCredential:
    """The ``ExecCredential`` a plugin printed on its standard output."""
    where = f"{plugin.where}: exec plugin {plugin.command}"
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ParseError(f"{where} did not print JSON: {err}") from err
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise ParseError(f"{where} did not print an ExecCredential")
    if doc.get("apiVersion") != plugin.api_version:
        raise ParseError(f"{where} answered {shorten(doc.get('apiVersion'))}, not "
                          f"{plugin.api_version}")
    status = doc.get("status")
    if not isinstance(status, dict):
        raise ParseError(f"{where}: the ExecCredential has no status")
    token = _opt(status, "token", where)
    if token and header_token_problem(token):
        raise ParseError(f"{where}: its token {header_token_problem(token)}")
    cert = _opt(status, "clientCertificateData", where)
    key = _opt(status, "clientKeyData", where)
    if not token and not (cert and key):
        raise ParseError(f"{where}: the ExecCredential holds neither a token nor a client "
                          "certificate and key")
    return ExecCredential(token=token, cert_data=cert.encode() if cert else None,
                          key_data=key.encode() if key else None,
                          expires=_opt(status, "expirationTimestamp", where))


def _server(value: Any, *, where: str) -> str:
    """An http(s) URL whose host and port can be connected to, without a trailing slash."""
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ParseError(f"{where}: 'server' must be an http(s) URL, not {shorten(value)}")
    try:
        url = urllib.parse.urlsplit(value)
        port = url.port  # raises on ":abc" and on ports past 65535
    except ValueError as err:
        raise ParseError(f"{where}: 'server' {shorten(value)} is not a valid URL: {err}"
                          ) from err
    if not url.hostname:
        raise ParseError(f"{where}: 'server' {shorten(value)} has no host")
    if port == 0:
        raise ParseError(f"{where}: 'server' {shorten(value)}: port 0 cannot be connected to")
    if any(ord(c) < 0x21 or c == "\x7f" for c in value):
        raise ParseError(f"{where}: 'server' {shorten(value)} holds spaces or control "
                          "characters")
    return value.rstrip("/")


def _bool(section: Mapping[str, Any], key: str, path: str) -> bool:
    """A real boolean: a string such as "false" is an error, never truthy."""
    value = section.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ParseError(f"{path}: '{key}' must be true or false (unquoted), not "
                          f"{shorten(value)}")
    return value


def header_token_problem(token: str) -> str | None:
    """Why ``token`` cannot be sent in an Authorization header, or None."""
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in token):
        return "holds control characters (a line break?)"
    if not token.isascii():
        return "holds non-ASCII characters"
    return None


def _token(section: Mapping[str, Any], path: str) -> str | None:
    token = _opt(section, "token", path)
    problem = header_token_problem(token) if token else None
    if problem:
        raise ParseError(f"{path}: 'token' {problem}")
    return token


def _named(doc: Mapping[str, Any], key: str, path: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    entries = doc.get(key) or []
    if not isinstance(entries, list):
        raise ParseError(f"{path}: '{key}' must be a list")
    for entry in entries:
        inner = key[:-1]  # clusters -> cluster
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ParseError(f"{path}: every entry of '{key}' needs a name")
        body = entry.get(inner) or {}
        if not isinstance(body, dict):
            raise ParseError(f"{path}: {key} '{entry['name']}' is not a mapping")
        out.append((entry["name"], body))
    return out


def _opt(section: Mapping[str, Any], key: str, path: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ParseError(f"{path}: '{key}' must be a string")
    return value


def _path(section: Mapping[str, Any], key: str, path: str) -> str | None:
    value = _opt(section, key, path)
    if value is None:
        return None
    return posixpath.normpath(posixpath.join(posixpath.dirname(path), value))


def _b64(section: Mapping[str, Any], key: str, path: str) -> bytes | None:
    value = _opt(section, key, path)
    if value is None:
        return None
    try:
        # Line breaks are allowed (some tools wrap the data); anything else that is not
        # base64 is an error, never a silent fallback to the system trust store.
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ParseError(f"{path}: '{key}' is not valid base64: {err}") from err
    if not raw:
        raise ParseError(f"{path}: '{key}' is empty once decoded")
    return raw


def _pem_text(section: Mapping[str, Any], key: str, path: str) -> str | None:
    raw = _b64(section, key, path)
    if raw is None:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as err:
        raise ParseError(f"{path}: '{key}' does not decode to PEM text") from err
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ParseError(f"{path}: '{key}' holds no PEM certificate "
                          "(-----BEGIN CERTIFICATE-----)")
    return text
