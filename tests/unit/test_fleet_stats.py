"""The Smirnov-Grubbs test and the slope of the fleet view."""

from __future__ import annotations

import random

import pytest

from netagent.fleet import stats

T_ISF = stats.student_t_isf()

# NIST/SEMATECH e-Handbook of Statistical Methods, 1.3.5.17 "Grubbs' Test for Outliers":
# eight mass spectrometer measurements of a uranium isotope (Tietjen and Moore, 1972).
# Published: G = 2.4687; critical value for the upper one-tailed test at alpha 0.05: 2.032.
NIST = [199.31, 199.53, 200.19, 200.82, 201.92, 201.95, 202.18, 245.57]


def test_the_published_worked_example() -> None:
    values = {f"m{i}": v for i, v in enumerate(NIST)}
    found = stats.grubbs(values, 0.05, T_ISF)
    assert [o.node for o in found] == ["m7"]  # 245.57, and nothing after it is removed
    assert found[0].g == pytest.approx(2.4687, abs=1e-4)
    # the one-tailed value at 0.05 is the two-sided one at 0.10
    assert round(stats.grubbs_critical(8, 0.10, T_ISF), 3) == 2.032
    # two-sided at 0.05 (ASTM E178, Table 1, n = 8, upper 2.5%: 2.126)
    assert found[0].critical == pytest.approx(2.126, abs=1e-3)
    assert round(found[0].mean, 5) == 206.43375


def test_equal_values_have_no_outliers_and_no_division_by_zero() -> None:
    assert stats.grubbs({f"n{i}": 0.1 for i in range(40)}, 0.05, T_ISF) == []
    assert stats.grubbs({f"n{i}": 0.0 for i in range(40)}, 0.05, T_ISF) == []


def test_one_node_apart_among_equal_ones_is_found_then_the_rest_is_equal() -> None:
    values = {f"n{i:02d}": 0.0 for i in range(40)}
    values["n17"] = 3.5
    found = stats.grubbs(values, 0.05, T_ISF)
    assert [(o.node, o.value) for o in found] == [("n17", 3.5)]


def test_the_test_repeats_after_removing_each_outlier() -> None:
    rng = random.Random(7)
    values = {f"n{i:02d}": rng.gauss(100, 2) for i in range(30)}
    values["n03"], values["n11"] = 160.0, 40.0
    found = stats.grubbs(values, 0.05, T_ISF)
    assert sorted(o.node for o in found) == ["n03", "n11"]
    assert found[0].critical > found[1].critical  # n shrinks, so does the critical value


def test_fewer_than_seven_nodes_are_refused() -> None:
    with pytest.raises(stats.TooFewNodes, match=r"too few nodes for the test \(5 < 7\)"):
        stats.grubbs({f"n{i}": float(i) for i in range(5)}, 0.05, T_ISF)


@pytest.mark.parametrize("n", [10, 40])
def test_the_false_positive_rate_of_a_homogeneous_fleet_is_near_alpha(n: int) -> None:
    """Normal noise, no outlier: the first round rejects in about alpha of the fleets.

    2,000 fleets of seeded noise: the standard error of the rate is 0.5%, and the bounds are
    three of them either side of alpha (one-sided critical values would give ~10%).
    """
    rng = random.Random(20261202 + n)
    trials, alpha = 2000, 0.05
    flagged = sum(
        bool(stats.grubbs({f"n{i}": rng.gauss(0.4, 0.05) for i in range(n)}, alpha, T_ISF))
        for _ in range(trials))
    rate = flagged / trials
    assert 0.035 <= rate <= 0.065, rate


def test_slope() -> None:
    points = [(t * 60.0, 300 + 2.5 * t) for t in range(121)]
    assert stats.slope(points) == pytest.approx(2.5 / 60)
    assert stats.slope([(0.0, 1.0)]) is None
    assert stats.slope([(5.0, 1.0), (5.0, 2.0)]) is None
