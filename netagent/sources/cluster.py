"""The cluster's size, and each node's overlay endpoint, from the Kubernetes API (§2.5 of
docs/design.md).

What a person would type: ``kubectl get --raw '/api/v1/nodes?limit=1'`` (one node and
``remainingItemCount``: the count costs one tiny request) or
``kubectl get nodes -o custom-columns=NAME:.metadata.name,IP:.metadata.annotations``.
Every node of a cluster runs this, so the list is read at most once per ``poll_seconds``
(plus up to 25% random jitter so a thousand agents do not ask in step): 1,000 nodes listing
every 15 s would be 66 LIST/s. Without API access the count comes from the configuration
(``nodes:`` or ``--nodes``).
"""

from __future__ import annotations

import os
import random
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence

from netagent.config import ClusterConfig, Config
from netagent.errors import NetagentError, ParseError, SourceError
from netagent.model import ClusterInfo, NodePeer
from netagent.parse.kube import (
    ACCEPT_METADATA,
    NODES_PATH,
    KubeTarget,
    parse_node_page,
)
from netagent.sources.kubeapi import SERVICE_ACCOUNT_DIR, KubeClient, resolve_target

# 100 nodes a page: a metadata page with managedFields is then ~1 MB, and decoding it
# ~10 MB of transient objects, so the agent stays inside its 60 MB RSS target while it
# reads a 5,000-node list (50 pages, once per poll_seconds). Only NodePeer records are kept.
PAGE_SIZE = 100
MAX_LISTED_NODES = 50_000  # ten times Kubernetes' tested limit: the bound on the list
MAX_PAGES = MAX_LISTED_NODES // PAGE_SIZE + 1
JITTER = 0.25  # the next poll comes after poll_seconds * (1 + up to 25%)


class ClusterSource:
    """Counts nodes (and, with ``peers``, reads their overlay annotations)."""

    name = "cluster"

    def __init__(
        self,
        config: ClusterConfig,
        *,
        nodes: int | None = None,
        peers: bool = False,
        env: Mapping[str, str] | None = None,
        service_account_dir: str = SERVICE_ACCOUNT_DIR,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.configured_nodes = nodes
        self.want_peers = peers
        self.env = os.environ if env is None else env
        self.service_account_dir = service_account_dir
        self.clock = clock
        self.rand = rand
        self._cached: ClusterInfo | None = None
        self._failure: str | None = None
        self._next_due: float | None = None
        self.requests = 0  # API requests made, for tests and the daemon's own metrics

    # -- credentials ------------------------------------------------------------------
    def target(self) -> KubeTarget | None:
        """Where to ask: the configured kubeconfig, ``KUBECONFIG``, or the pod's account."""
        return resolve_target(self.config, env=self.env,
                              service_account_dir=self.service_account_dir)

    # -- the Source protocol ------------------------------------------------------------
    def sample(self) -> ClusterInfo | None:
        """The last reading, without asking the API again."""
        return self._cached

    def collect(self) -> ClusterInfo:
        now = self.clock()
        if self._next_due is not None and now < self._next_due:
            if self._cached is not None:
                return self._cached
            if self._failure is not None:
                wait = f"next attempt in {self._next_due - now:.0f} s"
                if self.configured_nodes is not None:
                    return ClusterInfo(nodes=self.configured_nodes, source="configuration",
                                       note=f"Kubernetes API not used: {self._failure} "
                                            f"({wait})")
                raise SourceError(f"{self._failure} ({wait})")
        try:
            info = self._read()
        except Exception as err:
            # Every failure, a bug included, waits out the same poll interval: the API is
            # never asked more often than poll_seconds, whatever went wrong. The error itself
            # goes up unchanged, so the agent can log a bug's traceback (once).
            self._failure = (str(err) if isinstance(err, NetagentError)
                             else f"unexpected {type(err).__name__}: {err}")
            self._cached = None
            self._next_due = now + self.config.poll_seconds * (1 + JITTER * self.rand())
            if self.configured_nodes is not None:
                return ClusterInfo(nodes=self.configured_nodes, source="configuration",
                                   note=f"Kubernetes API not used: {err}")
            raise
        self._failure, self._cached = None, info
        self._next_due = now + self.config.poll_seconds * (1 + JITTER * self.rand())
        return info

    def _read(self) -> ClusterInfo:
        target = self.target()
        if target is None:
            if self.configured_nodes is not None:
                return ClusterInfo(nodes=self.configured_nodes, source="configuration",
                                   note="no Kubernetes credentials")
            raise SourceError(
                "no Kubernetes credentials: no in-cluster service account "
                "(KUBERNETES_SERVICE_HOST unset), no kubeconfig (--kubeconfig, KUBECONFIG or "
                "cluster.kubeconfig) and no --nodes or 'nodes:' in the configuration")
        client = KubeClient(target, timeout=self.config.api_timeout_seconds, clock=self.clock)
        source = f"Kubernetes API {target.server} ({target.origin})"
        if self.want_peers:
            count, peers = self._list(client, limit=PAGE_SIZE, keep=True)
            return ClusterInfo(nodes=count, source=source, peers=peers)
        count, _ = self._list(client, limit=1, keep=False)
        return ClusterInfo(nodes=count, source=source)

    def _list(self, client: KubeClient, *, limit: int, keep: bool
              ) -> tuple[int, tuple[NodePeer, ...]]:
        """Count (and keep) nodes; stop early when the server says how many remain.

        ``remainingItemCount`` is absent on servers before 1.15 and with some selectors:
        then the rest is paged through ``PAGE_SIZE`` at a time.
        """
        count = 0
        peers: list[NodePeer] = []
        token: str | None = None
        seen: set[str] = set()
        for page_no in range(MAX_PAGES):
            query = {"limit": str(limit if page_no == 0 else PAGE_SIZE)}
            if token:
                query["continue"] = token
            elif keep:
                # The whole list is wanted: resourceVersion=0 lets the API server answer
                # from its watch cache instead of a quorum read from etcd. (Not for the
                # limit=1 count: servers before 1.31 ignore limit with it and send every
                # node.) A continue token carries its own version, so later pages omit it.
                query["resourceVersion"] = "0"
            body = client.get(f"{NODES_PATH}?{urllib.parse.urlencode(query)}",
                              accept=ACCEPT_METADATA)
            self.requests += 1
            try:
                page = parse_node_page(body)
            except ParseError as err:
                raise SourceError(f"{client.target.server}{NODES_PATH}: {err}") from err
            count += page.count
            if keep:
                peers.extend(page.peers)
            if page.continue_token is None:
                return count, tuple(peers)
            if page.remaining is not None and not keep:
                return count + page.remaining, ()
            if page.continue_token in seen:
                raise SourceError(f"{client.target.server}{NODES_PATH}: the server sent the "
                                  f"same continue token twice (page {page_no + 1}): a loop")
            if count > MAX_LISTED_NODES:
                break
            seen.add(page.continue_token)
            token = page.continue_token
        raise SourceError(f"{client.target.server}{NODES_PATH}: more than "
                          f"{MAX_LISTED_NODES:,} nodes listed; netagent reads clusters up to "
                          "that size")


def from_config(config: Config, wanted: Sequence[str]) -> ClusterSource:
    # the node list (with annotations) only when the overlay checks will use it
    return ClusterSource(config.cluster, nodes=config.nodes, peers="overlay" in wanted)
