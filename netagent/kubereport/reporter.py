"""The agent's Kubernetes reporter: node conditions and events, outside the collection path.

It runs as one of the agent's consumers (its own thread and mailbox), so a slow or failing
API server never delays a collection. Per update it sends at most:

- one strategic-merge ``PATCH /api/v1/nodes/<name>/status`` with netagent's four conditions,
  when a condition's status or reason changed, or when the heartbeat is due
  (``kubernetes.heartbeat_seconds`` with jitter); a message that only changed (counts move
  every collection) waits for the heartbeat;
- one event per check status change and per remediation outcome, a repeat of an identical
  event being a ``PATCH`` of its ``count`` and ``lastTimestamp``, within a token bucket per
  reason and object.

Errors are logged once per kind (the operation and the HTTP status, or the failure) until
the API answers again; while it fails, requests back off from 10 s to the heartbeat.
Events that arrive meanwhile wait in a bounded queue (the oldest dropped). An event the API
refuses for good (400, 403, 404, 409, 422: no RBAC for events, a missing namespace) is
dropped and the refusal logged once, so it cannot hold back the conditions.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

from netagent.config import Config
from netagent.errors import NetagentError
from netagent.kubereport import conditions as plan
from netagent.kubereport.conditions import Event
from netagent.sources.kubeapi import STRATEGIC_MERGE, KubeClient, KubeError, resolve_target
from netagent.state import CheckTransition, KubeReportStatus, Update

log = logging.getLogger("netagent.kubernetes")

MAX_QUEUED_EVENTS = 100
# The reporter's requests: the metric's operation label -> how errors name them.
OPERATIONS = {"get_node": "read the Node", "patch_node_status": "patch the Node's conditions",
              "create_event": "create an event", "patch_event": "update an event"}
# Answers to an event write that a retry would get again: bad request, forbidden (no RBAC
# for events), invalid. 404 on a repeat's PATCH is handled where it happens.
REFUSED_FOR_GOOD = frozenset({400, 403, 404, 409, 422})
FIRST_BACKOFF = 10.0
JITTER = 0.1


def node_name(config: Config, env: Mapping[str, str]) -> str:
    return config.kubernetes.node_name or env.get("NODE_NAME", "")


def enabled(config: Config, env: Mapping[str, str]) -> bool:
    """``kubernetes.report``, or by default: in a cluster (a service account's environment)
    with a node name."""
    report = config.kubernetes.report
    if report is not None:
        return report
    return bool(node_name(config, env) and env.get("KUBERNETES_SERVICE_HOST"))


class KubeReporter:
    """Conditions and events for one Node; ``client`` is built on first use unless given."""

    name = "kubernetes"

    def __init__(self, config: Config, node: str, *, client: Any = None,
                 env: Mapping[str, str] | None = None,
                 now: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.k = config.kubernetes
        self.node = node
        self.env = os.environ if env is None else env
        self.now, self.clock = now, clock
        self.rng = rng or random.Random()
        self._client = client
        self._uid: str | None = None
        self._sent: dict[str, tuple[str, str]] = {}  # type -> (status, reason) last sent
        self._known: dict[str, str] = {}  # type -> status on the Node
        self._transitions: dict[str, str] = {}  # type -> lastTransitionTime
        self._next_heartbeat = 0.0
        self._retry_at = 0.0
        self._backoff = FIRST_BACKOFF
        self._failing: set[str] = set()  # kinds of error logged since the last success
        self._queue: deque[Event] = deque(maxlen=MAX_QUEUED_EVENTS)
        # guards _queue (remediation's thread adds to it) and the counters (scrapes read them)
        self._lock = threading.Lock()
        self._buckets = plan.TokenBuckets(burst=self.k.event_burst,
                                          refill_seconds=self.k.event_refill_seconds)
        self._cache = plan.EventCache()
        self._refused_kinds: set[str] = set()  # event errors logged (the events dropped)
        self._requests: Counter[tuple[str, str]] = Counter()  # (operation, HTTP code)
        self._dropped: Counter[str] = Counter()  # why -> events not recorded
        self._up: bool | None = None  # whether the last attempt reached the API

    @property
    def limited(self) -> int:
        """Events the rate limit dropped."""
        return self._dropped["rate_limited"]

    @property
    def dropped(self) -> int:
        """Events the API refused for good."""
        return self._dropped["refused"]

    def status(self) -> KubeReportStatus:
        """A snapshot for the exporter (any thread)."""
        with self._lock:
            return KubeReportStatus(requests=dict(self._requests), dropped=dict(self._dropped),
                                    up=self._up)

    def _drop(self, why: str) -> int:
        with self._lock:
            self._dropped[why] += 1
            return self._dropped[why]

    def _enqueue(self, events: list[Event]) -> None:
        with self._lock:
            full = len(self._queue) + len(events) - MAX_QUEUED_EVENTS
            if full > 0:
                self._dropped["queue_full"] += full
            self._queue.extend(events)  # the deque drops the oldest beyond its length

    # -- from other threads ------------------------------------------------------------
    def notify_action(self, key: str, result: str, message: str) -> None:
        """A remediation outcome (applied, failed, refused), recorded with the next update."""
        self._enqueue([plan.action_event(key, result, message)])

    # -- the consumer ------------------------------------------------------------------
    def consume(self, update: Update) -> None:
        events = [e for t in update.transitions if isinstance(t, CheckTransition)
                  for e in [plan.check_event(t.after, t.before)] if e is not None]
        self._enqueue(events)
        if self.clock() < self._retry_at:
            return
        try:
            self._node()
            self._conditions(update)
            self._events()
        except NetagentError as err:
            self._failed(err)
            return
        with self._lock:
            self._up = True
        if self._failing:
            log.info("Kubernetes reporting works again", extra={"event": "kube_recovered"})
            self._failing.clear()
        self._backoff = FIRST_BACKOFF

    # -- requests ----------------------------------------------------------------------
    def _api(self) -> Any:
        if self._client is None:
            target = resolve_target(self.config.cluster, env=self.env)
            if target is None:
                raise NetagentError("no Kubernetes credentials (no service account, no "
                                    "kubeconfig): node conditions and events are not sent")
            self._client = KubeClient(target, timeout=self.config.cluster.api_timeout_seconds)
        return self._client

    def _request(self, operation: str, method: str, path: str, body: Any = None,
                 content_type: str = "application/json") -> bytes:
        """One request; ``operation`` names it in metrics (``OPERATIONS``) and in errors."""
        code = "none"
        try:
            answer: bytes = self._api().request(method, path, body=body,
                                                content_type=content_type)
            code = "2xx"  # 200 or 201: the client returns only the body
        except NetagentError as err:  # KubeError (an HTTP status) or no answer at all
            code = str(getattr(err, "status", "none"))
            err.op = OPERATIONS[operation]  # type: ignore[attr-defined]
            raise
        finally:
            with self._lock:
                self._requests[(operation, code)] += 1
        return answer

    def _node(self) -> None:
        """The Node's uid and the conditions netagent set before (a restart keeps their
        lastTransitionTime), read once."""
        if self._uid is not None:
            return
        try:
            # resourceVersion=0: served from the API server's watch cache, not etcd
            body = self._request("get_node", "GET",
                                 f"/api/v1/nodes/{self.node}?resourceVersion=0")
        except KubeError as err:
            if err.status == 404:
                raise KubeError(f"node {self.node} is not known to the API server (is "
                                f"kubernetes.node_name or NODE_NAME right?): {err}", 404
                                ) from err
            raise
        try:
            node = json.loads(body)
            uid = node["metadata"]["uid"]
        except (ValueError, KeyError, TypeError) as err:
            raise NetagentError(f"GET /api/v1/nodes/{self.node}: not a Node") from err
        for ctype, (status, since) in plan.existing(node).items():
            self._known[ctype] = status
            if since:
                self._transitions[ctype] = since
        self._uid = str(uid)

    def _conditions(self, update: Update) -> None:
        want = plan.desired(update.state.checks)
        if not want:
            return
        changed = any((c.status, c.reason) != self._sent.get(t) for t, c in want.items())
        if not changed and self.clock() < self._next_heartbeat:
            return
        wall = self.now()
        transitions = dict(self._transitions)
        for ctype, c in want.items():
            if self._known.get(ctype) != c.status:
                transitions[ctype] = plan.timestamp(wall)
        body = plan.status_patch(list(want.values()), now=wall, transitions=transitions)
        self._request("patch_node_status", "PATCH",
                      f"/api/v1/nodes/{self.node}/status", body, STRATEGIC_MERGE)
        self._transitions = transitions
        self._sent = {t: (c.status, c.reason) for t, c in want.items()}
        self._known = {t: c.status for t, c in want.items()}
        beat = self.k.heartbeat_seconds
        self._next_heartbeat = self.clock() + beat * (1 + self.rng.uniform(-JITTER, JITTER))

    def _events(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                event = self._queue[0]
            try:
                self._record(event)
            except KubeError as err:
                if err.status not in REFUSED_FOR_GOOD:
                    raise  # the server's trouble (5xx, 429): kept, tried again later
                # Sending this event again would be refused again: drop it, so one event
                # the API will never take (no RBAC for events, an invalid body) does not
                # hold back the others or the conditions behind a growing backoff.
                self._drop("refused")
                op = getattr(err, "op", "record an event")
                if f"{op}: HTTP {err.status}" not in self._refused_kinds:
                    self._refused_kinds.add(f"{op}: HTTP {err.status}")
                    log.error("Kubernetes reporting: cannot %s: %s (event dropped; carrying "
                              "on; said once)", op, err,
                              extra={"event": "kube_error", "error": str(err)})
            with self._lock:
                if self._queue and self._queue[0] is event:
                    self._queue.popleft()

    def _record(self, event: Event) -> None:
        ns, wall = self.k.event_namespace, self.now()
        seen = self._cache.get(event)
        if not self._buckets.allow((event.reason, self.node), self.clock()):
            limited = self._drop("rate_limited")
            if limited == 1 or limited % 100 == 0:
                log.warning("events for %s: rate limit reached, %d dropped so far",
                            self.node, limited, extra={"event": "kube_event_limited"})
            return
        if seen is not None:
            try:
                self._request("patch_event", "PATCH",
                              f"/api/v1/namespaces/{ns}/events/{seen.name}",
                              {"count": seen.count + 1, "lastTimestamp": plan.timestamp(wall)},
                              STRATEGIC_MERGE)
                self._cache.put(event, plan.Recorded(seen.name, seen.count + 1))
                return
            except KubeError as err:
                if err.status != 404:  # gone (events expire after an hour): a new one
                    raise
                self._cache.forget(event)
        name = f"{self.node}.{time.time_ns():x}"
        assert self._uid is not None
        self._request("create_event", "POST", f"/api/v1/namespaces/{ns}/events",
                      plan.event_body(event, name=name, namespace=ns, node=self.node,
                                      uid=self._uid, now=wall))
        self._cache.put(event, plan.Recorded(name, 1))

    def _failed(self, err: NetagentError) -> None:
        op = getattr(err, "op", "reach the API server")
        status = getattr(err, "status", None)
        kind = f"{op}: HTTP {status}" if status else f"{op}: {err}"
        with self._lock:
            self._up = False
        self._retry_at = self.clock() + self._backoff * (1 + self.rng.uniform(0, JITTER))
        self._backoff = min(self._backoff * 2, max(FIRST_BACKOFF, self.k.heartbeat_seconds))
        if kind in self._failing or len(self._failing) >= 50:
            return
        self._failing.add(kind)
        log.error("Kubernetes reporting: cannot %s: %s (carrying on; said once until it "
                  "works again)", op, err,
                  extra={"event": "kube_error", "error": str(err)})
