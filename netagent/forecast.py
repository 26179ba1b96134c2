"""When will a table be full? Forecasts from the agent's own history (docs/design.md §4.7).

Pure arithmetic on (time, count) samples, no I/O. Each series keeps two independent
estimators of its growth, both O(1) per sample and bounded in memory:

* a least-squares slope over a long window (``forecast.window_seconds``), from running sums
  over a fixed-size ring of samples spaced at least window/capacity apart: it ignores noise
  and periodic patterns (GC sawtooths) but is slow to see a new trend;
* Holt's double exponential smoothing on every sample, for the recent trend: quick to see
  growth start and stop, but it overreacts to steps and bursts.

A table's forecast is the least-squares growth, and only while Holt's recent trend is at
least half of it: growth must be sustained over the window *and* still going on now. The
slope over the window is the rate (Holt's trend is noisier, and the lower of two noisy rates
is biased low); Holt is the gate that withdraws the forecast within a few samples once the
growth stops, which the window alone would remember for hours. That is what keeps a
sawtooth, a step or a burst from warning, at the cost of a late first warning when growth
starts after a long flat history (the ratio rules, and the structural estimate below, cover
that case).

For the neighbour tables a third, structural estimate uses the cluster's node count: entries
per node today x the node count's own trend gives the node count at which this node's table
is full, and when the cluster reaches it.

Guards: a minimum number of samples, a utilisation floor, the agreement above, hysteresis
when a warning clears (``clear_factor``), and a fresh history after a reset (the count falls
to a tenth of the previous sample at once: a flush, a restarted namespace) or a gap (no sample
for ``max_gap`` seconds: the trend across it is unknown).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

from netagent.config import ForecastConfig
from netagent.model import Forecast, Status

AGREEMENT = 0.5  # the recent trend must be at least this share of the long-term one
RESET_FRACTION = 0.10  # a sample below this share of the previous one starts a new history
CAPACITY = 512  # least-squares samples kept per series (4 KiB of times, 4 KiB of counts)


class Trend:
    """One series' history: a ring of samples for the least-squares slope, and Holt's state.

    ``add`` is O(1) amortised: the sums of the ring are updated as samples enter and leave,
    and recomputed from the ring once per ``CAPACITY`` evictions so rounding cannot drift.
    """

    def __init__(self, *, window: float, max_gap: float, alpha: float, beta: float,
                 capacity: int = CAPACITY) -> None:
        self.window = window
        self.max_gap = max_gap
        self.alpha = alpha
        self.beta = beta
        self.capacity = capacity
        self.spacing = window / capacity
        self._t = array("d", bytes(8 * capacity))
        self._v = array("d", bytes(8 * capacity))
        self.reset()

    def reset(self) -> None:
        self._start = 0  # index of the oldest ring sample
        self._n = 0  # ring samples held
        self._anchor = 0.0  # times are kept relative to it, for precision
        self._s = [0.0, 0.0, 0.0, 0.0]  # sums of t, v, t*t, t*v over the ring
        self._evictions = 0
        self.samples = 0  # every sample since the reset, ring or not
        self.first = self.last_t = self.last_v = math.nan
        self.level = self.trend = math.nan  # Holt's

    # -- updates ---------------------------------------------------------------------------
    def add(self, t: float, v: float) -> str:
        """Take a sample; returns "reset" or "gap" when it started a new history, else ""."""
        why = ""
        if self.samples:
            dt = t - self.last_t
            if dt <= 0:
                return ""  # out of order or repeated: ignored
            if dt > self.max_gap:
                why = "gap"
            elif v < RESET_FRACTION * self.last_v and self.last_v - v >= 10:
                why = "reset"
            if why:
                self.reset()
        if not self.samples:
            self._anchor, self.first = t, t
            self.level, self.trend = v, 0.0
        else:
            dt = t - self.last_t
            predicted = self.level + self.trend * dt
            level = self.alpha * v + (1 - self.alpha) * predicted
            if self.samples == 1:
                self.trend = (v - self.last_v) / dt
            else:
                self.trend = self.beta * (level - self.level) / dt + (1 - self.beta) * self.trend
            self.level = level
        self.samples += 1
        self.last_t, self.last_v = t, v
        self._ring_add(t, v)
        return why

    def _ring_add(self, t: float, v: float) -> None:
        if self._n and t - self._t[(self._start + self._n - 1) % self.capacity] \
                - self._anchor < self.spacing:
            return  # closer to the previous ring sample than the spacing: Holt only
        while self._n and (self._n == self.capacity
                           or t - self._anchor - self._t[self._start] > self.window):
            self._evict()  # may re-anchor: the new sample's time is taken after
        rel = t - self._anchor
        i = (self._start + self._n) % self.capacity
        self._t[i], self._v[i] = rel, v
        self._n += 1
        s = self._s
        s[0] += rel
        s[1] += v
        s[2] += rel * rel
        s[3] += rel * v

    def _evict(self) -> None:
        t, v = self._t[self._start], self._v[self._start]
        s = self._s
        s[0] -= t
        s[1] -= v
        s[2] -= t * t
        s[3] -= t * v
        self._start = (self._start + 1) % self.capacity
        self._n -= 1
        self._evictions += 1
        if self._evictions >= self.capacity:
            self._resum()

    def _resum(self) -> None:
        """Re-anchor at the oldest sample and recompute the sums from the ring."""
        self._evictions = 0
        idx = [(self._start + k) % self.capacity for k in range(self._n)]
        shift = self._t[idx[0]] if idx else 0.0
        for i in idx:
            self._t[i] -= shift
        self._anchor += shift
        ts = [self._t[i] for i in idx]
        vs = [self._v[i] for i in idx]
        self._s = [sum(ts), sum(vs), sum(t * t for t in ts),
                   sum(t * v for t, v in zip(ts, vs, strict=True))]

    # -- readings ----------------------------------------------------------------------------
    @property
    def span(self) -> float:
        return 0.0 if not self.samples else self.last_t - self.first

    def least_squares(self) -> float | None:
        """The slope (per second) over the ring, or None with fewer than two samples."""
        n = self._n
        if n < 2:
            return None
        st, sv, stt, stv = self._s
        denominator = n * stt - st * st
        if denominator <= 1e-9 * max(1.0, stt):
            return None
        return (n * stv - st * sv) / denominator

    def holt(self) -> float | None:
        return None if self.samples < 2 else self.trend


def classify(seconds: float | None, config: ForecastConfig,
             previous: Status = Status.OK) -> Status:
    """The status a time to full earns, with hysteresis: once warning (or critical), the
    status holds until the time exceeds its threshold by ``clear_factor``."""
    if seconds is None:
        return Status.OK
    clear = config.clear_factor
    if seconds <= config.critical_seconds or (
            previous is Status.CRITICAL and seconds <= config.critical_seconds * clear):
        return Status.CRITICAL
    if seconds <= config.warning_seconds or (
            previous >= Status.WARNING and seconds <= config.warning_seconds * clear):
        return Status.WARNING
    return Status.OK


def seconds_to_full(count: float, limit: float, rate: float | None,
                    config: ForecastConfig) -> float | None:
    """(limit - count) / rate, when the rate is a growth and the time within the horizon."""
    if count >= limit:
        return 0.0
    if rate is None or rate <= 0:
        return None
    seconds = (limit - count) / rate
    return seconds if seconds <= config.max_seconds else None


@dataclass(frozen=True)
class NodeGrowth:
    """The cluster's node count and its growth, from the node-count series."""

    nodes: int
    per_second: float | None  # None: not growing (or too little history)


class Forecaster:
    """Every series the agent forecasts, by table ("neighbour.ipv4", "conntrack"), and the
    cluster's node count. Owned by the agent's collection path; not thread-safe."""

    def __init__(self, config: ForecastConfig, *, max_gap: dict[str, float] | None = None,
                 default_gap: float = 300.0) -> None:
        self.config = config
        self.max_gap = dict(max_gap or {})
        self.default_gap = default_gap
        self._trends: dict[str, Trend] = {}
        self._levels: dict[str, Status] = {}
        self._nodes: tuple[int, Trend] | None = None

    def _trend(self, key: str) -> Trend:
        trend = self._trends.get(key)
        if trend is None:
            c = self.config
            trend = self._trends[key] = Trend(
                window=c.window_seconds, max_gap=self.max_gap.get(key, self.default_gap),
                alpha=c.smoothing, beta=c.trend_smoothing)
        return trend

    def nodes(self, t: float, count: int) -> None:
        """A reading of the cluster's node count."""
        trend = self._nodes[1] if self._nodes else self._trend("cluster.nodes")
        trend.add(t, float(count))
        self._nodes = (count, trend)

    def node_growth(self) -> NodeGrowth | None:
        """The node count and its least-squares growth over the window. Not Holt's: a node
        count is a staircase, flat between the steps, where Holt's trend swings both ways."""
        if self._nodes is None:
            return None
        count, trend = self._nodes
        slope = trend.least_squares() if trend.samples >= self.config.min_samples else None
        return NodeGrowth(count, slope if slope is not None and slope > 0 else None)

    def _agreed_rate(self, trend: Trend) -> tuple[float | None, str]:
        """The long-term growth, while the recent trend confirms it, or None and why not."""
        if trend.samples < self.config.min_samples:
            return None, f"{trend.samples} of {self.config.min_samples} samples so far"
        ls, holt = trend.least_squares(), trend.holt()
        if ls is None or holt is None:
            return None, "no trend yet"
        if ls <= 0:
            return None, "not growing over the window"
        if holt < AGREEMENT * ls:
            return None, "no longer growing as fast as over the window"
        return ls, ""

    def update(self, key: str, t: float, count: float, limit: int, *,
               structural: bool = False) -> Forecast:
        """Take one sample of table ``key`` and return its forecast."""
        trend = self._trend(key)
        restarted = trend.add(t, float(count))
        c = self.config
        estimates = {"least_squares": trend.least_squares(), "holt": trend.holt()}
        rate, held = self._agreed_rate(trend)
        if limit > 0 and count < c.min_utilisation * limit:
            rate, held = None, (f"below the {c.min_utilisation:.0%} utilisation floor")
        if restarted:
            held = f"history restarted after a {restarted}"
        seconds = seconds_to_full(count, limit, rate, c) if limit > 0 else None
        if rate is not None and seconds is None and not held:
            held = "not full within the forecast horizon"
        nodes = structure = None
        growth = self.node_growth() if structural else None
        if growth is not None and growth.nodes > 0 and count > 0 and limit > 0:
            full_at = int(limit * growth.nodes / count)  # entries per node x nodes = limit
            nodes = max(0, full_at - growth.nodes)
            structure = seconds_to_full(growth.nodes, full_at, growth.per_second, c)
        if structure is not None and count >= c.min_utilisation * limit and (
                seconds is None or structure < seconds):
            seconds = structure
        level = classify(seconds, c, self._levels.get(key, Status.OK))
        self._levels[key] = level
        return Forecast(
            table=key, count=count, limit=limit, method="trend",
            span_seconds=trend.span, samples=trend.samples,
            rate_per_second=rate, seconds_to_full=seconds, level=level, held=held,
            estimates={k: v for k, v in estimates.items() if v is not None},
            nodes=growth.nodes if growth else None, nodes_until_full=nodes,
            node_growth_per_second=growth.per_second if growth else None,
            seconds_to_full_by_nodes=structure)


def short_term(key: str, before: tuple[float, float], after: tuple[float, float],
               count: float, limit: int, config: ForecastConfig) -> Forecast:
    """``netagent check``'s forecast: the rate between two samples (time, total) taken
    ``--interval`` apart, applied to ``count``. No history, so no agreement or hysteresis:
    it says how fast the table grows right now, and is marked as such. A rate over a few
    seconds is too little evidence for critical: it warns at most."""
    dt = after[0] - before[0]
    rate = (after[1] - before[1]) / dt if dt > 0 else None
    held = ""
    if rate is None:
        held = "no interval between the samples"
    elif limit > 0 and count < config.min_utilisation * limit:
        held = f"below the {config.min_utilisation:.0%} utilisation floor"
    seconds = None if held or limit <= 0 else seconds_to_full(count, limit, rate, config)
    return Forecast(table=key, count=count, limit=limit, method="short-term",
                    span_seconds=max(0.0, dt), samples=2,
                    rate_per_second=rate if rate is not None and rate > 0 else None,
                    seconds_to_full=seconds,
                    level=min(classify(seconds, config), Status.WARNING), held=held,
                    estimates={"short_term": rate} if rate is not None else {})
