"""Forecasts on synthetic series, with the clock injected as the samples' own times.

Every series is sampled every 15 s (the agent's default interval) against a limit of 1,024
(the default gc_thresh3), with the default ``forecast:`` settings (warning within an hour,
critical within 15 minutes, a 6-hour window) unless a test says otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from netagent.checks import forecasts as words
from netagent.config import ForecastConfig
from netagent.forecast import CAPACITY, Forecaster, Trend, classify, short_term
from netagent.model import Forecast, Status

LIMIT = 1024
STEP = 15.0
KEY = "neighbour.ipv4"


def feed(series: Iterable[tuple[float, float]], *, config: ForecastConfig | None = None,
         forecaster: Forecaster | None = None, limit: int = LIMIT) -> list[Forecast]:
    f = forecaster or Forecaster(config or ForecastConfig(), default_gap=5 * STEP)
    return [f.update(KEY, t, v, limit) for t, v in series]


def ramp(rate: float, *, start: float = 0.0, t0: float = 0.0, until: float = LIMIT,
         noise: float = 0.0, seed: int = 1) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    out, t, v = [], t0, start
    while v < until:
        out.append((t, max(0.0, v + rng.uniform(-noise, noise))))
        t += STEP
        v = start + rate * (t - t0)
    return out


def first(results: list[Forecast], level: Status) -> int | None:
    return next((i for i, r in enumerate(results) if r.level >= level), None)


def test_linear_ramp_forecasts_the_time_left_and_warns_at_the_configured_horizons() -> None:
    rate = 0.1  # entries per second: empty to full in 2.8 h
    series = ramp(rate, noise=1.0)
    results = feed(series)
    for (t, v), r in zip(series, results, strict=True):
        truth = (LIMIT - v) / rate
        if v >= 0.25 * LIMIT:  # above the floor, every forecast is close
            assert r.seconds_to_full is not None, (t, r.held)
            assert r.seconds_to_full == pytest.approx(truth, rel=0.15)
            assert r.rate_per_second == pytest.approx(rate, rel=0.15)
        else:
            assert r.seconds_to_full is None and "floor" in r.held
    warned, critical = first(results, Status.WARNING), first(results, Status.CRITICAL)
    assert warned is not None and critical is not None
    left = lambda i: (LIMIT - series[i][1]) / rate  # noqa: E731
    assert 3600 * 0.85 <= left(warned) <= 3600
    assert 900 * 0.85 <= left(critical) <= 900
    # the summary says how fast and when, as an operator reads it
    clause = words.words(results[critical])
    assert clause.startswith("+6.0 entries/min, full in ~1") and "min" in clause


def test_ramp_that_plateaus_clears_within_five_samples_and_then_forecasts_nothing() -> None:
    rate = 0.2
    series = ramp(rate, until=0.5 * LIMIT)
    plateau_at = len(series)
    t_end = series[-1][0]
    series += [(t_end + STEP * k, series[-1][1]) for k in range(1, 200)]
    results = feed(series)
    assert results[plateau_at - 1].level is Status.WARNING  # the ramp warned
    assert all(r.level is Status.WARNING or r.level is Status.OK for r in results)
    assert all(r.level is Status.OK for r in results[plateau_at + 5:])
    # the long window still remembers the ramp, the recent trend does not: no forecast
    assert results[-1].seconds_to_full is None
    assert results[-1].estimates["least_squares"] > 0
    assert results[-1].estimates["holt"] * 3600 < 1  # under one entry an hour


def sawtooth(cycles: int, *, low: float = 0.2, high: float = 0.6,
             period: float = 1800.0) -> list[tuple[float, float]]:
    """A slow rise from ``low`` to ``high`` of the limit, then periodic GC back down."""
    per = int(period / STEP)
    return [((c * per + i) * STEP, LIMIT * (low + (high - low) * i / (per - 1)))
            for c in range(cycles) for i in range(per)]


def test_sawtooth_between_20_and_60_percent_warns_at_most_in_its_first_cycle() -> None:
    series = sawtooth(8)
    results = feed(series)
    per = int(1800 / STEP)
    # the first rise is a trend like any other: it may warn (here it does)
    assert first(results[:per], Status.WARNING) is not None
    assert first(results[per:], Status.WARNING) is None
    assert max(r.estimates["least_squares"] for r in results[-per:]) * 60 < 1.0


def test_counter_reset_starts_a_new_history() -> None:
    config = ForecastConfig()
    f = Forecaster(config, default_gap=5 * STEP)
    before = feed(ramp(0.2, until=0.6 * LIMIT), forecaster=f)
    assert before[-1].seconds_to_full is not None
    t0 = before[-1].span_seconds + STEP
    restarted = f.update(KEY, t0, 3, LIMIT)  # flushed: 614 -> 3 entries at once
    assert restarted.samples == 1 and "reset" in restarted.held
    assert restarted.seconds_to_full is None and restarted.level is Status.OK
    # The new ramp is forecast from its own samples only: had the history kept the 600
    # entries before the flush, the long-term slope would be negative and hold it back.
    after = feed(ramp(0.1, start=3, t0=t0 + STEP), forecaster=f)
    above = [(r, r.count) for r in after if r.count > 0.3 * LIMIT]
    for r, count in above:
        assert r.seconds_to_full == pytest.approx((LIMIT - count) / 0.1, rel=0.05)
    # a drop that is not to a tenth (a sawtooth's GC) is not a reset
    f2 = Forecaster(config, default_gap=5 * STEP)
    feed(ramp(0.2, until=0.6 * LIMIT), forecaster=f2)
    assert f2.update(KEY, t0, 0.2 * LIMIT, LIMIT).samples > 1


def test_a_gap_starts_a_new_history_and_old_samples_are_ignored() -> None:
    f = Forecaster(ForecastConfig(), default_gap=5 * STEP)
    series = ramp(0.2, start=300, until=0.6 * LIMIT)
    results = feed(series, forecaster=f)
    assert results[-1].seconds_to_full is not None
    last_t = series[-1][0]
    # a sample from the past (a clock step back, a repeat) changes nothing
    assert f.update(KEY, last_t, 900, LIMIT).samples == results[-1].samples
    # no sample for six intervals: the trend across the gap is unknown
    resumed = f.update(KEY, last_t + 6 * STEP, 700, LIMIT)
    assert resumed.samples == 1 and "gap" in resumed.held and resumed.seconds_to_full is None
    later = feed([(last_t + 6 * STEP + k * STEP, 700 + 0.1 * k * STEP) for k in range(1, 12)],
                 forecaster=f)
    assert [r.seconds_to_full is None for r in later[:8]] == [True] * 8  # 10 samples needed
    assert later[-1].samples == 12
    assert later[-1].rate_per_second == pytest.approx(0.1, rel=0.05)
    # five intervals missing is still the same history
    f2 = Forecaster(ForecastConfig(), default_gap=5 * STEP)
    feed(series, forecaster=f2)
    assert f2.update(KEY, last_t + 5 * STEP, series[-1][1], LIMIT).samples == len(series) + 1


def test_step_up_never_warns() -> None:
    flat = [(k * STEP, 0.3 * LIMIT) for k in range(int(21600 / STEP))]
    t = flat[-1][0]
    step = [(t + k * STEP, 0.55 * LIMIT) for k in range(1, int(21600 / STEP))]
    results = feed(flat + step)
    jump = results[len(flat)]
    assert jump.estimates["holt"] * 3600 > LIMIT  # the recent trend alone would alarm
    assert all(r.level is Status.OK for r in results)


def test_node_growth_gives_the_node_count_and_the_time_at_which_the_table_fills() -> None:
    """One entry per node today, +20 nodes an hour: full at 1,024 nodes, 524 nodes away."""
    f = Forecaster(ForecastConfig(), default_gap=5 * STEP)
    nodes_per_second = 20 / 3600
    result = None
    for k in range(40):
        t = k * STEP
        nodes = 500 + nodes_per_second * t
        f.nodes(t, round(nodes))
        result = f.update(KEY, t, round(nodes), LIMIT, structural=True)
    assert result is not None
    assert result.nodes == 503
    assert result.nodes_until_full == 521  # 1,024 - 503 at one entry per node
    assert result.node_growth_per_second is not None
    assert result.node_growth_per_second * 3600 == pytest.approx(20, rel=0.1)
    assert result.seconds_to_full_by_nodes == pytest.approx(521 / nodes_per_second, rel=0.1)
    assert "full at about 1024 nodes; at +" in words.words(result)
    # a fast scale-up warns through the structural estimate alone
    fast = Forecaster(ForecastConfig(), default_gap=5 * STEP)
    for k in range(40):
        fast.nodes(k * STEP, 500 + 10 * k)  # +2,400 nodes an hour
        quick = fast.update(KEY, k * STEP, 600, LIMIT, structural=True)  # flat table
    assert quick.seconds_to_full is not None and quick.seconds_to_full < 3600
    assert quick.level >= Status.WARNING
    assert quick.rate_per_second is None  # the table's own history does not grow


def test_guards_samples_and_floor() -> None:
    config = ForecastConfig(min_samples=10)
    results = feed(ramp(2.0, start=600), config=config)
    assert all(r.seconds_to_full is None and "samples" in r.held for r in results[:9])
    assert results[9].seconds_to_full is not None
    # below the utilisation floor nothing is forecast, however steep
    low = feed(ramp(2.0, until=0.24 * LIMIT))
    assert all(r.seconds_to_full is None for r in low)


def test_hysteresis() -> None:
    c = ForecastConfig(warning_seconds=3600, critical_seconds=900, clear_factor=1.25)
    assert classify(3500, c) is Status.WARNING
    assert classify(4000, c) is Status.OK
    assert classify(4000, c, Status.WARNING) is Status.WARNING
    assert classify(4600, c, Status.WARNING) is Status.OK
    assert classify(1000, c, Status.CRITICAL) is Status.CRITICAL
    assert classify(1200, c, Status.CRITICAL) is Status.WARNING
    assert classify(None, c, Status.CRITICAL) is Status.OK


def test_short_term_rate_is_marked_and_warns_at_most() -> None:
    c = ForecastConfig()
    f = short_term(KEY, (10.0, 396), (12.0, 400), 400, LIMIT, c)
    assert f.method == "short-term" and f.rate_per_second == pytest.approx(2.0)
    assert f.seconds_to_full == pytest.approx(312)
    assert f.level is Status.WARNING  # 5 minutes would be critical from a history
    assert words.words(f) == ("+120 entries/min over the last 2 s (short-term rate), "
                              "full in ~5 min")
    shrinking = short_term(KEY, (10.0, 500), (12.0, 400), 400, LIMIT, c)
    assert shrinking.seconds_to_full is None and words.words(shrinking) == ""


def test_trend_memory_is_bounded_and_sums_stay_exact() -> None:
    """A day of samples every second: the ring never exceeds its capacity, and the slope
    from running sums (re-anchored as the ring turns) equals one computed afresh."""
    trend = Trend(window=3600, max_gap=10, alpha=0.5, beta=0.4)
    rng = random.Random(7)
    for k in range(86400):
        trend.add(1e9 + k, 5000 + 0.01 * k + rng.uniform(-1, 1))
    assert trend._n <= CAPACITY
    idx = [(trend._start + i) % trend.capacity for i in range(trend._n)]
    ts = [trend._t[i] for i in idx]
    vs = [trend._v[i] for i in idx]
    n, mt, mv = len(ts), sum(ts) / len(ts), sum(vs) / len(vs)
    fresh = sum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True)) / sum(
        (t - mt) ** 2 for t in ts)
    assert n > 400 and ts[-1] - ts[0] <= 3600
    assert trend.least_squares() == pytest.approx(fresh, rel=1e-9)
    assert trend.least_squares() == pytest.approx(0.01, rel=0.05)


def test_duration_words() -> None:
    assert words.duration(25 * 60) == "~25 min"
    assert words.duration(45) == "~45 s"
    assert words.duration(5 * 3600) == "~5.0 h"
    assert words.duration(3 * 86400) == "~3.0 days"
