"""The daemon behind ``netagent run``: collect on a schedule, judge, and serve metrics.

Each source runs in its own thread on its own interval (with jitter, so a fleet of nodes
does not poll in step) and fails on its own: a DNS round waiting out dead resolvers, or a
slow API server, never delays the neighbour tables. After every collection the checks are
evaluated again on the latest observation of every source, with the previous observation
of each as the baseline, so counters become rates over one interval. The HTTP server
(``netagent.exporter.server``) runs in its own threads and only reads the latest state.
A person sees the same as ``curl -s localhost:9465/metrics``.

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
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from netagent import __version__
from netagent.checks import registry
from netagent.config import Config, parse_listen
from netagent.errors import NetagentError
from netagent.exporter.collector import SOURCE_TOTALS, Fold
from netagent.exporter.server import HttpServer, make_app, make_registry
from netagent.exporter.state import AgentState, SourceState
from netagent.model import CheckResult, Observations, SourceRun, Status
from netagent.sources import Source
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
        folds: Mapping[str, Fold] = SOURCE_TOTALS,
    ) -> None:
        self.sources = dict(sources)
        self.folds = folds
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
        self._bugs_logged: set[tuple[str, str]] = set()

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
        """One thread per source until ``stop()``; returns when all have ended."""
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
        source = self.sources[name]
        start = self.clock()
        error: str | None = None
        observation: Any = None
        try:
            observation = source.collect()
        except Exception as err:  # every failure, even a bug, stays inside this source
            error = str(err) or type(err).__name__
            if not isinstance(err, NetagentError | OSError):
                error = f"unexpected {type(err).__name__}: {error}"
                self._log_bug(name, error)
        run = SourceRun(name=name, ok=error is None, duration_seconds=round(
            self.clock() - start, 6), error=error)
        with self._lock:
            self._record(run, observation)
        return run

    def _record(self, run: SourceRun, observation: Any) -> None:
        name, error = run.name, run.error
        was = self._state.sources.get(name)
        if error is None:
            if name in self._last_success:
                self._previous[name] = self._last_success[name]
            self._last_success[name] = self._latest[name] = observation
            self._errors.pop(name, None)
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
        self._log_source(run, was.run if was else None)
        sources = dict(self._state.sources)
        sources[name] = SourceState(name=name, run=run, observation=observation,
                                    totals=self._totals.get(name))
        checks = self._evaluate(sources, changed=name)
        self._log_checks(self._state.checks, checks)
        self._state = AgentState(sources=sources, checks=checks)

    def _evaluate(self, sources: Mapping[str, SourceState], *,
                  changed: str) -> tuple[CheckResult, ...]:
        """Judge again only what the ``changed`` source feeds; keep the other verdicts.

        A collection of one source cannot change another source's checks unless they read
        it (``registry.INPUTS``): re-running every check after every collection would
        repeat, say, the 1,000-peer overlay analysis after each DNS round.
        """
        # Only sources collected at least once are judged: before its first collection a
        # source has no check rather than an "unknown" that would only mean "starting".
        baseline = {n: self._previous[n] for n in self._latest if n in self._previous}
        obs = Observations(current=dict(self._latest), baseline=baseline,
                           errors=dict(self._errors))
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

    # -- one log line per change ----------------------------------------------------------
    def _log_bug(self, name: str, error: str) -> None:
        """A bug's traceback once per source and distinct error, not at every interval."""
        key = (name, error)
        with self._lock:
            if key in self._bugs_logged:
                return
            if len(self._bugs_logged) >= 100:  # bounded even if every message differs
                self._bugs_logged.clear()
            self._bugs_logged.add(key)
        log.exception("source %s raised an unexpected error", name,
                      extra={"event": "source_bug", "source": name, "error": error})

    def _log_source(self, run: SourceRun, before: SourceRun | None) -> None:
        if before is not None and before.ok == run.ok:
            return
        if run.ok:
            log.info("source %s up (collected in %.3f s)", run.name, run.duration_seconds,
                     extra={"event": "source_up", "source": run.name,
                            "duration_seconds": run.duration_seconds})
        else:
            log.warning("source %s down: %s", run.name, run.error,
                        extra={"event": "source_down", "source": run.name, "error": run.error})

    def _log_checks(self, before: tuple[CheckResult, ...],
                    after: tuple[CheckResult, ...]) -> None:
        old = {c.id: c.status for c in before}
        for check in after:
            was = old.get(check.id)
            if was is check.status:
                continue
            log.log(_LEVEL[check.status], "check %s %s -> %s: %s", check.id,
                    was.label if was is not None else "none", check.status.label,
                    check.summary,
                    extra={"event": "check_status", "check": check.id,
                           "from": was.label if was is not None else None,
                           "to": check.status.label, "summary": check.summary})


# -- logging ---------------------------------------------------------------------------

_EXTRA_KEYS = ("event", "source", "check", "from", "to", "error", "duration_seconds",
               "summary", "listen", "version")


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
    sources = build_sources(config)
    agent = Agent(sources, config)
    server = HttpServer(make_app(make_registry(agent.state, config=config), ready=agent.ready),
                        host=host, port=port)

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
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped", extra={"event": "stop"})
    if not received:
        raise NetagentError("the collector thread ended unexpectedly")
