"""The DNS part of a kubelet configuration file (``KubeletConfiguration``, YAML or JSON).

What a person would type: ``grep -A2 clusterDNS /var/lib/kubelet/config.yaml`` (kubeadm
writes it there; EKS uses /etc/kubernetes/kubelet/kubelet-config.json, read as
JSON). ``clusterDNS`` is the list of nameservers kubelet writes into every ClusterFirst pod's
resolv.conf; with NodeLocal DNSCache in IPVS mode it holds the cache's link-local address.
A file that cannot be understood gives a ``KubeletDns`` whose ``problem`` says why.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from netagent.loaders import LoadError, load_yaml
from netagent.model import KubeletDns

KIND = "KubeletConfiguration"


def parse_kubelet_config(text: str, *, path: str) -> KubeletDns:
    data: Any
    if text.lstrip().startswith("{"):
        # JSON (EKS, OpenShift): read as JSON, since YAML refuses tabs JSON allows
        try:
            data = json.loads(text)
        except ValueError as err:
            return KubeletDns(path=path, problem=f"{path}: not valid JSON: {err}")
        except RecursionError:
            return KubeletDns(path=path, problem=f"{path}: not valid JSON: nested too deeply")
    else:
        try:
            data = load_yaml(text, where=path)
        except LoadError as err:
            return KubeletDns(path=path, problem=_first_line(err))
    if not isinstance(data, dict):
        return KubeletDns(path=path, problem=f"{path}: not a KubeletConfiguration (no mapping)")
    kind = data.get("kind")
    if kind is not None and kind != KIND:
        return KubeletDns(path=path, problem=f"{path}: kind is {kind!r}, not {KIND}")
    domain = data.get("clusterDomain")
    if domain is not None and not isinstance(domain, str):
        return KubeletDns(path=path, problem=f"{path}: clusterDomain is not a string")
    servers = data.get("clusterDNS")
    if servers is None:
        return KubeletDns(path=path, cluster_domain=domain,
                          problem=f"{path}: no clusterDNS (pods get the node's resolv.conf)")
    if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
        return KubeletDns(path=path, cluster_domain=domain,
                          problem=f"{path}: clusterDNS is not a list of addresses")
    bad = [s for s in servers if not _is_ip(s)]
    if bad:
        return KubeletDns(path=path, cluster_domain=domain,
                          problem=f"{path}: clusterDNS holds non-addresses: {', '.join(bad)}")
    return KubeletDns(path=path, cluster_dns=tuple(servers), cluster_domain=domain)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
