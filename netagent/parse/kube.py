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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from netagent.errors import ConfigError, NetagentError
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


class KubeAPIError(NetagentError):
    """An answer from the API server that is not the list asked for."""


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


def parse_node_page(body: bytes | str) -> NodePage:
    """A ``NodeList`` or ``PartialObjectMetadataList`` page.

    Both hold each node's ``metadata`` (with its annotations) under ``items``; the list's
    own ``metadata`` carries ``continue`` and, on servers since 1.15, ``remainingItemCount``.
    """
    doc = _json(body)
    kind = doc.get("kind", "")
    if kind == "Status":
        raise KubeAPIError(status_message(doc))
    items = doc.get("items")
    if items is None:
        items = []  # an empty list is serialised as "items": null by some servers
    if not isinstance(items, list):
        raise KubeAPIError(f"a {kind or 'list'} whose 'items' is not a list")
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise KubeAPIError("a list whose 'metadata' is not an object")
    remaining = meta.get("remainingItemCount")
    if remaining is not None and (not isinstance(remaining, int) or remaining < 0):
        raise KubeAPIError(f"remainingItemCount {remaining!r} is not a count")
    return NodePage(
        kind=kind,
        count=len(items),
        peers=tuple(node_peer(item) for item in items),
        continue_token=meta.get("continue") or None,
        remaining=remaining,
    )


def node_peer(item: Any) -> NodePeer:
    """The overlay endpoint one node's annotations describe."""
    meta = item.get("metadata") if isinstance(item, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise KubeAPIError("a node without metadata.name")
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
    message = doc.get("message") or "no message"
    reason = doc.get("reason")
    return f"{reason}: {message}" if reason and reason not in str(message) else str(message)


def error_reason(code: int, body: bytes) -> str:
    """Why a request failed, from the ``Status`` body when the server sent one."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        return f"HTTP {code}: {status_message(doc)}"
    text = body[:200].decode("utf-8", "replace").strip()
    return f"HTTP {code}" + (f": {text}" if text else "")


def _json(body: bytes | str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as err:
        raise KubeAPIError(f"not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise KubeAPIError("not a JSON object")
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
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: a kubeconfig must be a mapping")
        for key, into in (("clusters", clusters), ("users", users)):
            for entry in _named(doc, key, path):
                into.setdefault(entry[0], (path, entry[1]))
        for name, body in _named(doc, "contexts", path):
            contexts.setdefault(name, body)
        if current is None and doc.get("current-context"):
            current = str(doc["current-context"])
    where = ", ".join(p for p, _ in documents)
    if not current:
        raise ConfigError(f"{where}: no current-context")
    if current not in contexts:
        raise ConfigError(f"{where}: context '{current}' not found")
    ctx = contexts[current]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if cluster_name not in clusters:
        raise ConfigError(f"{where}: cluster '{cluster_name}' of context '{current}' not found")
    cpath, cluster = clusters[cluster_name]
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise ConfigError(f"{cpath}: cluster '{cluster_name}' has no http(s) server")
    user: dict[str, Any] = {}
    upath = cpath
    if user_name is not None:
        if user_name not in users:
            raise ConfigError(f"{where}: user '{user_name}' of context '{current}' not found")
        upath, user = users[user_name]
    for unsupported in ("exec", "auth-provider"):
        if user.get(unsupported):
            raise ConfigError(f"{upath}: user '{user_name}' authenticates with "
                              f"'{unsupported}', which netagent does not run: give it a token "
                              f"or a client certificate (a ServiceAccount token works)")
    if user.get("username") or user.get("password"):
        raise ConfigError(f"{upath}: user '{user_name}': basic authentication is not supported")
    return KubeTarget(
        server=server.rstrip("/"),
        origin=f"kubeconfig {cpath} (context {current})",
        token=_opt(user, "token", upath),
        token_file=_path(user, "tokenFile", upath),
        ca_file=_path(cluster, "certificate-authority", cpath),
        ca_data=_pem_text(cluster, "certificate-authority-data", cpath),
        cert_file=_path(user, "client-certificate", upath),
        cert_data=_b64(user, "client-certificate-data", upath),
        key_file=_path(user, "client-key", upath),
        key_data=_b64(user, "client-key-data", upath),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
    )


def _named(doc: Mapping[str, Any], key: str, path: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for entry in doc.get(key) or []:
        inner = key[:-1]  # clusters -> cluster
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{path}: every entry of '{key}' needs a name")
        body = entry.get(inner) or {}
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: {key} '{entry['name']}' is not a mapping")
        out.append((entry["name"], body))
    return out


def _opt(section: Mapping[str, Any], key: str, path: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}: '{key}' must be a string")
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
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError) as err:
        raise ConfigError(f"{path}: '{key}' is not base64: {err}") from err


def _pem_text(section: Mapping[str, Any], key: str, path: str) -> str | None:
    raw = _b64(section, key, path)
    return None if raw is None else raw.decode("ascii", "replace")
