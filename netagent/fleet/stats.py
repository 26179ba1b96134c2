"""The statistics of the fleet view: the Smirnov-Grubbs test and a least-squares slope.

Grubbs (two-sided, the sample standard deviation), for n values with mean m and standard
deviation s::

    G = max |x - m| / s
    G_crit = (n - 1) / sqrt(n) * sqrt(t^2 / (n - 2 + t^2)),  t = t_{alpha/(2n), n-2}

where t is the upper critical value of Student's t with n - 2 degrees of freedom (scipy).
The value furthest from the mean is an outlier when G > G_crit; it is removed and the test
repeated on the rest, until nothing is found or fewer than MIN_NODES values remain. Every
node equal gives s = 0 and no outlier: there is nothing to tell apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

MIN_NODES = 7
MAX_OUTLIERS = 20  # per metric: a fleet with more odd nodes than this has a bigger problem


@dataclass(frozen=True)
class Outlier:
    node: str
    value: float
    mean: float
    stddev: float
    g: float
    critical: float


class TooFewNodes(ValueError):
    pass


def student_t_isf() -> Callable[[float, int], float]:
    """scipy's upper critical value of Student's t, ``ImportError`` when scipy is missing."""
    from scipy import stats  # type: ignore[import-untyped]

    def isf(p: float, df: int) -> float:
        return float(stats.t.isf(p, df))

    return isf


def grubbs_critical(n: int, alpha: float, t_isf: Callable[[float, int], float]) -> float:
    t = t_isf(alpha / (2 * n), n - 2)
    return (n - 1) / math.sqrt(n) * math.sqrt(t * t / (n - 2 + t * t))


def grubbs(values: Mapping[str, float], alpha: float,
           t_isf: Callable[[float, int], float]) -> list[Outlier]:
    """The outliers among ``values`` (node -> value), most extreme first.

    Raises ``TooFewNodes`` below MIN_NODES values.
    """
    if len(values) < MIN_NODES:
        raise TooFewNodes(f"too few nodes for the test ({len(values)} < {MIN_NODES})")
    left = dict(values)
    found: list[Outlier] = []
    while len(left) >= MIN_NODES and len(found) < MAX_OUTLIERS:
        data = list(left.values())
        mean = statistics.fmean(data)
        stddev = statistics.stdev(data)  # exact for equal values: 0, never a rounding residue
        if stddev == 0:
            break
        # ties (two nodes equally far out) go to the node named first, so runs agree
        node = max(sorted(left), key=lambda k: abs(left[k] - mean))
        g = abs(left[node] - mean) / stddev
        critical = grubbs_critical(len(left), alpha, t_isf)
        if g <= critical:
            break
        found.append(Outlier(node, left.pop(node), mean, stddev, g, critical))
    return found


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, v) points, per unit of t; None below two distinct times."""
    if len(points) < 2:
        return None
    tm = statistics.fmean(t for t, _ in points)
    vm = statistics.fmean(v for _, v in points)
    sxx = math.fsum((t - tm) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    return math.fsum((t - tm) * (v - vm) for t, v in points) / sxx
