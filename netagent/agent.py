"""The daemon behind ``netagent run``: collect on a schedule, judge, and serve metrics.

Each source runs in its own thread on its own interval (with jitter, so a fleet of nodes
does not poll in step) and fails on its own: a DNS round waiting out dead resolvers, or a
slow API server, never delays the neighbour tables. After every collection the checks are
evaluated again on the latest observation of every source, with the previous observation
of each as the baseline, so counters become rates over one interval.

The result is one immutable ``AgentState`` (``netagent.state``), swapped atomically under a
short lock that only recording takes. Everything else consumes it outside that lock: the
HTTP server (``netagent.exporter.server``) reads the latest state per scrape, and each
consumer (the log today; remediation and Kubernetes reporting next) has its own thread and
mailbox, and gets every new state with the transitions that led to it. A slow or failing
consumer never delays a collection. A person sees the same as
``curl -s localhost:9465/metrics``.

The log has one line per state change (a source going up or down, a check changing
status), never one per sample.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, Protocol

from netagent import __version__, catalog
from netagent.checks import registry
from netagent.checks.levels import levels
from netagent.config import Config, parse_listen
from netagent.errors import NetagentError
from netagent.exporter.server import HttpServer, make_app, make_registry
from netagent.forecast import Forecaster
from netagent.model import CheckResult, ClusterInfo, Forecast, Observations, SourceRun, Status
from netagent.sources import Source, run_source
from netagent.state import (
    AgentState,
    CheckTransition,
    RemediationStatus,
    SourceState,
    SourceTransition,
    Transition,
    Update,
)
from netagent.wiring import build_sources

log = logging.getLogger("netagent.agent")

_LEVEL = {Status.OK: logging.INFO, Status.WARNING: logging.WARNING,
          Status.CRITICAL: logging.ERROR, Status.UNKNOWN: logging.WARNING}


class Agent:
    """The schedule of every source and the state carried between collections.

    ``clock`` is monotonic seconds; ``wait(seconds)`` sleeps and returns True when the agent
    must stop (by default ``threading.Event.wait`` on the agent's stop event, so ``stop()``
    ends every sleep at once). Both are injected so tests run a schedule without sleeping.
    """

    def __init__(
        self,
        sources: Mapping[str, Source],
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
        rng: random.Random | None = None,
        consumers: Sequence[Consumer] | None = None,
    ) -> None:
        self.sources = dict(sources)
        self.folds: dict[str, Fold] = {
            spec.name: catalog.resolve(spec.totals) for spec in catalog.SOURCES
            if spec.totals and spec.name in self.sources}
        self.config = config
        self.clock = clock
        self._stop = threading.Event()
        self.wait = wait or self._stop.wait
        self.rng = rng or random.Random()
        settings = config.agent
        self.intervals = {name: float(getattr(settings.intervals, name)) for name in sources}
        self.jitter = settings.jitter
        # Sources start within the first second, in random order, then drift apart.
        now = clock()
        self.due = {name: now + self.rng.uniform(0, min(1.0, self.jitter * interval))
                    for name, interval in self.intervals.items()}
        # Guards what follows: each source's thread records its collection under it.
        self._lock = threading.Lock()
        self._latest: dict[str, Any] = {}  # source -> its latest observation, if it succeeded
        self._last_success: dict[str, Any] = {}  # source -> its latest successful observation
        self._previous: dict[str, Any] = {}  # source -> the success before that
        self._errors: dict[str, str] = {}  # source -> why its latest collection failed
        self._totals: dict[str, Any] = {}  # source -> running totals (see SOURCE_TOTALS)
        self._checks: dict[str, tuple[CheckResult, ...]] = {}  # source -> its checks' verdicts
        self._state = AgentState()
        # Each table's history for its forecast: a sample may go missing for five intervals
        # before the history starts again (``netagent.forecast``).
        self.forecaster = Forecaster(config.forecast, max_gap={
            "neighbour.ipv4": 5 * self.intervals.get("neighbours", 15.0),
            "neighbour.ipv6": 5 * self.intervals.get("neighbours", 15.0),
            "conntrack": 5 * self.intervals.get("conntrack", 15.0),
            "cluster.nodes": max(5 * self.intervals.get("cluster", 30.0),
                                 3 * config.cluster.poll_seconds)})
        self._forecasts: dict[str, Forecast] = {}
        self._bugs_logged: set[tuple[str, str]] = set()
        self.mailboxes = [Mailbox(c) for c in (
            [LogConsumer()] if consumers is None else consumers)]

    # -- what the HTTP threads read ------------------------------------------------------
    def state(self) -> AgentState:
        return self._state

    def ready(self) -> bool:
        """Every source has completed one collection (successful or not)."""
        return set(self._state.sources) >= set(self.sources)

    # -- the loops --------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """One thread per source, and one per consumer, until ``stop()``; returns when the
        collections have ended."""
        for mailbox in self.mailboxes:
            mailbox.start(self._stop)
        threads = [threading.Thread(target=self.run_source, args=(name,),
                                    name=f"collect-{name}", daemon=True)
                   for name in self.sources]
        for thread in threads:
            thread.start()
        for thread in threads:
            # A collection in progress is not interrupted; it is bounded by the source's
            # own timeouts, and the threads are daemons, so exit never waits for one.
            while thread.is_alive() and not self.stopping:
                thread.join(timeout=1.0)

    def run_source(self, name: str, *, max_rounds: int | None = None) -> None:
        """Collect one source whenever it is due, until ``stop()`` (or ``max_rounds``)."""
        rounds = 0
        while not self.stopping and (max_rounds is None or rounds < max_rounds):
            delay = self.due[name] - self.clock()
            if delay > 0 and self.wait(delay):
                break
            rounds += 1
            start = self.clock()
            self.collect_one(name)
            # From the start of this collection, so a slow source keeps its rhythm; one
            # longer than its interval runs again at once.
            self.due[name] = start + self.intervals[name] * (
                1 + self.rng.uniform(-self.jitter, self.jitter))

    def collect_one(self, name: str) -> SourceRun:
        collected = run_source(name, self.sources[name], clock=self.clock)
        if self.stopping:
            # A collection that outlived stop() (it is not interrupted) is dropped: after
            # stop nothing is recorded, posted or logged, however late the source returns.
            return collected.run
        if collected.bug is not None:
            self._log_bug(name, collected.run.error or "", collected.bug)
        with self._lock:
            update = self._record(collected.run, collected.observation)
            self._state = update.state
            # Posting only hands the update over (a few list operations under each
            # mailbox's own lock); the consumers do their work in their own threads.
            # Under this lock, so that every consumer sees the updates in order.
            for mailbox in self.mailboxes:
                mailbox.post(update)
        return collected.run

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every consumer has taken in every update (in tests and at shutdown);
        a consumer whose thread is not running is given its updates in this thread."""
        return all(mailbox.drain(timeout) for mailbox in self.mailboxes)

    def _record(self, run: SourceRun, observation: Any) -> Update:
        """The state after ``run``, and what changed: pure bookkeeping, no I/O, no log."""
        name, error = run.name, run.error
        was = self._state.sources.get(name)
        if error is None:
            if name in self._last_success:
                self._previous[name] = self._last_success[name]
            self._last_success[name] = self._latest[name] = observation
            self._errors.pop(name, None)
            self._forecast(observation, run)
            if name in self.folds:
                try:
                    self._totals[name] = self.folds[name](self._totals.get(name), observation)
                except Exception:  # a bug here keeps the totals as they were
                    log.exception("cannot add the %s observation to its totals", name)
        else:
            # The checks see no observation, but the last success stays the baseline for
            # the next one: counters then become rates over the longer interval.
            self._latest.pop(name, None)
            self._errors[name] = error
        transitions: list[Transition] = []
        if was is None or was.run.ok != run.ok:
            transitions.append(SourceTransition(was.run if was else None, run))
        sources = dict(self._state.sources)
        sources[name] = SourceState(name=name, run=run, observation=observation,
                                    totals=self._totals.get(name),
                                    baseline=self._previous.get(name))
        checks = self._evaluate(sources, changed=name)
        old = {c.id: c.status for c in self._state.checks}
        transitions.extend(CheckTransition(old.get(c.id), c) for c in checks
                           if old.get(c.id) is not c.status)
        return Update(AgentState(sources=sources, checks=checks,
                                 forecasts=dict(self._forecasts)), tuple(transitions))

    def _forecast(self, observation: Any, run: SourceRun) -> None:
        """Feed the tables ``observation`` measures (and the node count) to the forecasts.
        A table no longer measured (its limit now unreadable) loses its forecast."""
        try:
            if isinstance(observation, ClusterInfo):
                self.forecaster.nodes(self.clock(), observation.nodes)
                return
            measured = levels(observation)
            owned = {"neighbours": "neighbour.", "conntrack": "conntrack"}.get(run.name)
            if owned is None:
                return
            for key in [k for k in self._forecasts if k.startswith(owned)
                        and k not in measured]:
                del self._forecasts[key]
            for key, level in measured.items():
                self._forecasts[key] = self.forecaster.update(
                    key, level.t, level.entries, level.limit,
                    structural=key.startswith("neighbour."))
        except Exception:  # a bug here leaves the forecasts as they were
            log.exception("cannot add the %s observation to the forecasts", run.name)

    def _evaluate(self, sources: Mapping[str, SourceState], *,
                  changed: str) -> tuple[CheckResult, ...]:
        """Judge again only what the ``changed`` source feeds; keep the other verdicts.

        A collection of one source cannot change another source's checks unless they read
        it (the catalog's ``reads``): re-running every check after every collection would
        repeat, say, the 1,000-peer overlay analysis after each DNS round.
        """
        # Only sources collected at least once are judged: before its first collection a
        # source has no check rather than an "unknown" that would only mean "starting".
        baseline = {n: self._previous[n] for n in self._latest if n in self._previous}
        obs = Observations(current=dict(self._latest), baseline=baseline,
                           errors=dict(self._errors), forecasts=dict(self._forecasts))
        names = [n for n in self.sources if n in sources]
        for source in names:
            if source in self._checks and changed not in registry.inputs(source):
                continue
            try:
                self._checks[source] = tuple(registry.evaluate(obs, self.config,
                                                               sources=[source]))
            except Exception:  # a check bug keeps the previous verdicts rather than none
                log.exception("checks of %s failed; keeping the previous results", source)
        return tuple(check for source in names for check in self._checks.get(source, ()))

    def _log_bug(self, name: str, error: str, bug: BaseException) -> None:
        """A bug's traceback once per source and distinct error, not at every interval."""
        key = (name, error)
        with self._lock:
            if key in self._bugs_logged:
                return
            if len(self._bugs_logged) >= 100:  # bounded even if every message differs
                self._bugs_logged.clear()
            self._bugs_logged.add(key)
        log.error("source %s raised an unexpected error", name,
                  exc_info=(type(bug), bug, bug.__traceback__),
                  extra={"event": "source_bug", "source": name, "error": error})


# -- consumers -------------------------------------------------------------------------

Fold = Callable[[Any, Any], Any]


class Consumer(Protocol):
    """Takes each new state with the transitions since the previous one it was given."""

    name: str

    def consume(self, update: Update) -> None: ...


class Mailbox:
    """One consumer's queue and thread.

    ``post`` never waits for the consumer: it merges the update into what is pending (the
    newest state replaces an older one not yet taken; transitions are kept in order, at
    most MAX_PENDING, the oldest dropped and counted beyond that). The consumer's thread
    takes everything pending at once, so a slow consumer sees fewer states, never a
    stale one, and every transition while it keeps up. An exception in the consumer is
    logged once per kind of error and the thread carries on.
    """

    MAX_PENDING = 10_000

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._cond = threading.Condition()
        self._state: AgentState | None = None
        self._transitions: list[Transition] = []
        self._busy = False
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self.dropped = 0  # transitions dropped because the consumer fell behind
        self._errors_logged: set[str] = set()

    def post(self, update: Update) -> None:
        with self._cond:
            self._state = update.state
            self._transitions.extend(update.transitions)
            excess = len(self._transitions) - self.MAX_PENDING
            if excess > 0:
                del self._transitions[:excess]
                self.dropped += excess
            self._cond.notify()

    def start(self, stop: threading.Event) -> None:
        self._stop = stop
        self._thread = threading.Thread(target=self._loop, name=f"consume-{self.consumer.name}",
                                        daemon=True)
        self._thread.start()

    def _take(self) -> Update | None:
        if self._state is None:
            return None
        update = Update(self._state, tuple(self._transitions))
        self._state, self._transitions = None, []
        self._busy = True
        return update

    def _loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            with self._cond:
                update = self._take()
                if update is None:
                    self._cond.wait(timeout=0.5)
                    continue
            self._deliver(update)

    def _deliver(self, update: Update) -> None:
        try:
            self.consumer.consume(update)
        except Exception as err:  # a consumer's bug never reaches the collections
            kind = f"{type(err).__name__}: {err}"
            if kind not in self._errors_logged and len(self._errors_logged) < 100:
                self._errors_logged.add(kind)
                log.exception("consumer %s failed; carrying on", self.consumer.name)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Until nothing is pending or being consumed; True when that was reached."""
        if self._thread is None or not self._thread.is_alive():
            with self._cond:
                update = self._take()
            if update is not None:
                self._deliver(update)
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._state is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=left)
        return True


class LogConsumer:
    """One log line per transition: a source going up or down, a check changing status."""

    name = "log"

    def consume(self, update: Update) -> None:
        for t in update.transitions:
            if isinstance(t, SourceTransition):
                self._source(t)
            else:
                self._check(t)

    @staticmethod
    def _source(t: SourceTransition) -> None:
        run = t.after
        if run.ok:
            log.info("source %s up (collected in %.3f s)", run.name, run.duration_seconds,
                     extra={"event": "source_up", "source": run.name,
                            "duration_seconds": run.duration_seconds})
        else:
            log.warning("source %s down: %s", run.name, run.error,
                        extra={"event": "source_down", "source": run.name, "error": run.error})

    @staticmethod
    def _check(t: CheckTransition) -> None:
        check, was = t.after, t.before
        log.log(_LEVEL[check.status], "check %s %s -> %s: %s", check.id,
                was.label if was is not None else "none", check.status.label, check.summary,
                extra={"event": "check_status", "check": check.id,
                       "from": was.label if was is not None else None,
                       "to": check.status.label, "summary": check.summary})


class RemediationConsumer:
    """Plans after every update and, in ``apply`` mode, acts (``netagent.remediation``).

    It runs in its own thread, so a slow write or a failing one never delays a collection;
    every failure is an outcome, logged, counted in ``netagent_remediation_actions_total``,
    and monitoring carries on. In ``dry-run`` it logs what it would do, once per plan.
    """

    name = "remediation"

    def __init__(self, config: Config, *, now: Callable[[], float] = time.time,
                 listeners: Sequence[Callable[[str, str, str], None]] = ()) -> None:
        self.config = config
        self.mode = config.remediation.mode
        self.now = now
        self.listeners = list(listeners)  # (key, result, message) of each outcome
        self._status = RemediationStatus(mode=self.mode)
        self._actions: dict[tuple[str, str], int] = {}
        self._refused: set[tuple[str, str]] = set()
        self._said: str = ""
        self._errors: set[str] = set()

    def status(self) -> RemediationStatus:
        return self._status

    def consume(self, update: Update) -> None:
        from netagent import __version__ as version
        from netagent.remediation import executor, plan
        from netagent.sources import sysctl

        r = self.config.remediation
        sources = update.state.sources
        obs = Observations(
            current={n: s.observation for n, s in sources.items() if s.up},
            baseline={n: s.baseline for n, s in sources.items()
                      if s.up and s.baseline is not None},
            forecasts=update.state.forecasts)
        try:
            journal = sysctl.read_journal(r)
        except NetagentError as err:
            self._error(f"remediation stopped: {err}")
            return
        facts = sysctl.read_facts(r, now=self.now())
        the_plan = plan.plan(obs, facts, journal, self.config)
        for e in the_plan.elsewhere:
            if e.new:
                log.warning("remediation: %s is managed elsewhere (%s); netagent leaves it "
                            "alone", e.key, e.why,
                            extra={"event": "remediation_released", "key": e.key,
                                   "error": e.why})
        refused = {(x.key, x.reason) for x in the_plan.refusals if x.ceiling
                   or x.reason.startswith("conntrack limits")}
        for key, reason in sorted(refused - self._refused):
            self._actions[(key, "refused")] = self._actions.get((key, "refused"), 0) + 1
            log.error("remediation refused %s: %s", key, reason,
                      extra={"event": "remediation_refused", "key": key, "error": reason})
            self._tell(key, "refused", reason)
        self._refused = refused
        values = dict(facts.values)
        if self.mode == "apply" and (the_plan.pending or any(e.new for e in the_plan.elsewhere)):
            outcomes, journal = executor.apply(the_plan, journal, r, now=facts.now,
                                               version=version)
            for o in outcomes:
                self._log_outcome(o, the_plan)
                if o.key in values or o.key.startswith("nftables:"):
                    self._actions[(o.key, o.result)] = self._actions.get((o.key, o.result),
                                                                         0) + 1
                if o.ok and o.key in values:
                    values[o.key] = o.after
        elif self.mode == "dry-run" and the_plan.pending:
            said = "; ".join(f"{a.key} {a.current} -> {a.target}" for a in the_plan.actions)
            said += "".join(f"; NOTRACK {'add' if n.add else 'remove'} {n.address}"
                            for n in the_plan.notrack)
            if said != self._said:
                log.info("remediation (dry-run) would change: %s", said,
                         extra={"event": "remediation_plan", "summary": said})
            self._said = said
        elsewhere = {e.key for e in the_plan.elsewhere}
        self._status = RemediationStatus(
            mode=self.mode, actions=dict(self._actions),
            managed={k: k not in elsewhere for k in values}, values=values,
            at_ceiling=frozenset(x.key for x in the_plan.refusals if x.ceiling))

    def _tell(self, key: str, result: str, message: str) -> None:
        for listener in self.listeners:
            listener(key, result, message)

    def _log_outcome(self, o: Any, the_plan: Any) -> None:
        reason = next((a.reason for a in the_plan.actions if a.key == o.key), o.reason)
        self._tell(o.key, "applied" if o.ok else "failed",
                   f"{'' if o.before is None else o.before} -> {o.target} ({reason})"
                   if o.ok else f"-> {o.target}: {o.reason}")
        if o.ok:
            log.warning("remediation: %s %s -> %s (%s)", o.key,
                        "" if o.before is None else o.before, o.target, reason,
                        extra={"event": "remediation_applied", "key": o.key,
                               "from": o.before, "to": o.target, "summary": reason})
        else:
            log.error("remediation failed: %s -> %s: %s", o.key, o.target, o.reason,
                      extra={"event": "remediation_failed", "key": o.key,
                             "to": o.target, "error": o.reason})

    def _error(self, message: str) -> None:
        if message not in self._errors:
            self._errors.add(message)
            log.error(message, extra={"event": "remediation_error", "error": message})


# -- logging ---------------------------------------------------------------------------

_EXTRA_KEYS = ("event", "source", "check", "from", "to", "error", "duration_seconds",
               "summary", "listen", "version", "key")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _EXTRA_KEYS:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(fmt: str, *, stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(message)s",
                                      datefmt="%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger("netagent")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


# -- the process -----------------------------------------------------------------------

def serve(config: Config, *, listen: str | None = None) -> None:
    """``netagent run``: serve until SIGTERM or SIGINT, then stop within a couple of seconds.

    Returns after a signal; raises ``NetagentError`` if the collector thread died.
    """
    host, port = parse_listen(listen or config.agent.listen)
    import os

    from netagent.kubereport import reporter as kube

    sources = build_sources(config)
    reporter = None
    if kube.enabled(config, os.environ):
        node = kube.node_name(config, os.environ)
        if node:
            reporter = kube.KubeReporter(config, node)
        else:
            log.error("kubernetes.report is on but no node name is known (set NODE_NAME or "
                      "kubernetes.node_name): node conditions and events are not sent",
                      extra={"event": "kube_error"})
    remediation = (RemediationConsumer(config, listeners=[reporter.notify_action] if reporter
                                       else [])
                   if config.remediation.mode != "off" else None)
    agent = Agent(sources, config,
                  consumers=[LogConsumer(), *([remediation] if remediation else []),
                             *([reporter] if reporter else [])])
    registry = make_registry(agent.state, config=config,
                             remediation=remediation.status if remediation else None,
                             kubernetes=reporter.status if reporter else None)
    server = HttpServer(make_app(registry, ready=agent.ready), host=host, port=port)

    # The handler only records the signal. Setting the agent's Event from a handler could
    # deadlock: the handler runs in the main thread, possibly while it holds that Event's
    # lock, and the lock is not reentrant.
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=agent.run, name="collectors", daemon=True)
    try:
        server.start()
        log.info("netagent %s listening on %s:%d; sources: %s", __version__, host,
                 server.port, ", ".join(sources) or "none",
                 extra={"event": "start", "listen": f"{host}:{server.port}",
                        "version": __version__})
        worker.start()
        while not received and worker.is_alive():
            time.sleep(0.2)
        if received:
            log.info("received %s, stopping", signal.Signals(received[0]).name,
                     extra={"event": "signal"})
    finally:
        agent.stop()
        server.stop()
        worker.join(timeout=2)
        agent.flush(timeout=1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped", extra={"event": "stop"})
    if not received:
        raise NetagentError("the collector thread ended unexpectedly")
