"""The Kubernetes reporter's four requests through lightkube, for ``scripts/bench --kube-client``.

netagent's reporter talks to the API through one method, ``request(method, path, body=...,
content_type=...) -> bytes`` raising ``KubeError`` on an HTTP status. This adapter gives it
the same method on top of a lightkube ``Client``, so ``netagent run`` can be measured with
either client and nothing else changed. Imported only in the throw-away venv that has
lightkube; netagent itself does not depend on it.
"""

from __future__ import annotations

import json
from typing import Any

from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.core_v1 import Event, Node
from lightkube.types import PatchType

from netagent.errors import SourceError
from netagent.sources.kubeapi import KubeError


class LightkubeAdapter:
    """GET a Node, PATCH its status, POST and PATCH an event: the reporter's whole use."""

    def __init__(self, kubeconfig: str, *, timeout: float) -> None:
        self.client = Client(config=KubeConfig.from_file(kubeconfig), timeout=timeout)

    def request(self, method: str, path: str, *, accept: str = "application/json",
                body: Any = None, content_type: str = "application/json") -> bytes:
        parts = path.split("?", 1)[0].strip("/").split("/")
        try:
            return self._request(method, parts, body)
        except ApiError as err:
            raise KubeError(f"{method} {path}: {err.status.message}", err.status.code or 0
                            ) from err
        except Exception as err:  # httpx's transport errors: refused, timed out, TLS
            raise SourceError(f"{method} {path}: {err}") from err

    def _request(self, method: str, parts: list[str], body: Any) -> bytes:
        strategic = PatchType.STRATEGIC
        match method, parts:
            case "GET", ["api", "v1", "nodes", name]:
                return json.dumps(self.client.get(Node, name).to_dict()).encode()
            case "PATCH", ["api", "v1", "nodes", name, "status"]:
                self.client.patch(Node.Status, name, body, patch_type=strategic)
            case "POST", ["api", "v1", "namespaces", ns, "events"]:
                self.client.create(Event.from_dict(body), namespace=ns)
            case "PATCH", ["api", "v1", "namespaces", ns, "events", name]:
                self.client.patch(Event, name, body, namespace=ns, patch_type=strategic)
            case _:
                raise SourceError(f"{method} /{'/'.join(parts)}: not one of the reporter's "
                                  "requests")
        return b"{}"


def install() -> None:
    """Make every ``KubeReporter`` in this process use lightkube (called before the agent
    starts, by the bench's launcher)."""
    from netagent.kubereport import reporter

    def api(self: reporter.KubeReporter) -> Any:
        if self._client is None:
            cluster = self.config.cluster
            if not cluster.kubeconfig:
                raise SourceError("the lightkube bench needs cluster.kubeconfig")
            self._client = LightkubeAdapter(cluster.kubeconfig,
                                            timeout=cluster.api_timeout_seconds)
        return self._client

    reporter.KubeReporter._api = api  # type: ignore[method-assign]
