"""analyst.stats: Wilson intervals, Mantel-Haenszel differences and the CMH test, checked
against scipy's own implementations and against cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from analyst.stats import (
    Difference,
    chi_square,
    cmh,
    describe_difference,
    mh_difference,
    wilson,
)


@pytest.mark.parametrize("k,n", [(0, 10), (5, 10), (10, 10), (1, 3), (37, 120), (999, 1000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson(k, n)
    assert low == pytest.approx(ci.low, abs=1e-9)
    assert high == pytest.approx(ci.high, abs=1e-9)


def test_wilson_edges() -> None:
    assert wilson(0, 0) == (None, None)
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)  # the textbook value
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_mh_difference_of_one_stratum_is_the_wald_difference() -> None:
    d = mh_difference([(60, 100, 40, 100)])
    assert d is not None
    se = math.sqrt(0.6 * 0.4 / 100 + 0.4 * 0.6 / 100)
    assert d.estimate == pytest.approx(0.2)
    assert d.low == pytest.approx(0.2 - 1.959964 * se, abs=1e-6)
    assert d.high == pytest.approx(0.2 + 1.959964 * se, abs=1e-6)
    assert (d.n1, d.n2, d.strata) == (100, 100, 1)


def test_mh_difference_undoes_simpsons_paradox() -> None:
    """A is shown at a happy hour, B at a sad one; within each hour they are equal.
    Pooled, A looks 49 points happier; held within hours, the difference is zero."""
    strata = [(80, 100, 8, 10), (2, 10, 20, 100)]
    pooled = Difference(82 / 110 - 28 / 110, 0, 0, 110, 110, 1)
    assert pooled.estimate > 0.45
    d = mh_difference(strata)
    assert d is not None
    assert d.estimate == pytest.approx(0.0, abs=1e-12)
    assert not d.excludes_zero
    # ...and the CMH test finds no association, where the pooled chi-square does.
    tables = [np.array([[80, 20], [8, 2]]), np.array([[2, 8], [20, 80]])]
    q = cmh(tables)
    assert q is not None and q.statistic == pytest.approx(0.0, abs=1e-9) and q.p_value > 0.99
    pooled_test = chi_square(np.sum(tables, axis=0))
    assert pooled_test is not None and pooled_test.p_value < 1e-10


def test_mh_difference_skips_strata_without_both_groups() -> None:
    assert mh_difference([(5, 10, 0, 0), (0, 0, 3, 9)]) is None
    d = mh_difference([(5, 10, 0, 0), (30, 50, 20, 50)])
    assert d is not None and d.strata == 1 and d.estimate == pytest.approx(0.2)
    assert mh_difference([(10, 10, 7, 7)]) is None  # no variance: nothing to estimate


def test_cmh_one_stratum_is_scaled_pearson() -> None:
    t = np.array([[30, 10, 5], [12, 25, 9], [7, 8, 20]])
    q = cmh([t])
    pearson = sps.chi2_contingency(t, correction=False)
    n = t.sum()
    assert q is not None
    assert q.statistic == pytest.approx(pearson.statistic * (n - 1) / n)
    assert q.df == 4
    assert q.p_value == pytest.approx(sps.chi2.sf(q.statistic, 4))


def test_cmh_2x2_matches_the_classic_formula() -> None:
    """For 2 x 2 x K tables the generalised statistic is the textbook CMH (no continuity
    correction): (sum(a - E[a]))^2 / sum(Var[a])."""
    tables = [np.array([[12, 8], [5, 15]]), np.array([[20, 10], [9, 11]]),
              np.array([[3, 7], [2, 9]])]
    num = var = 0.0
    for t in tables:
        n = t.sum()
        r1, c1 = t[0].sum(), t[:, 0].sum()
        num += t[0, 0] - r1 * c1 / n
        var += r1 * (n - r1) * c1 * (n - c1) / (n * n * (n - 1))
    q = cmh(tables)
    assert q is not None and q.df == 1
    assert q.statistic == pytest.approx(num * num / var)


def test_cmh_with_a_campaign_missing_from_some_strata() -> None:
    tables = [np.array([[10, 5], [6, 9], [0, 0]]), np.array([[0, 0], [4, 10], [12, 3]])]
    q = cmh(tables)
    assert q is not None and q.df == 2 and 0 <= q.p_value <= 1
    assert cmh([np.array([[3, 0], [0, 0]])]) is None  # no informative stratum


def test_chi_square_drops_empty_rows_and_columns() -> None:
    res = chi_square(np.array([[10, 0, 5], [0, 0, 0], [4, 0, 12]]))
    assert res is not None and res.df == 1 and res.n == 31
    assert chi_square(np.array([[10, 5], [0, 0]])) is None


def test_describe_difference_sentences() -> None:
    big = Difference(0.2, 0.1, 0.3, 200, 180, 12)
    assert describe_difference("A", "B", "happy", big, {}, 30) == (
        "A has a higher happy share than B: +20.0 points (95% interval +10.0 points to "
        "+30.0 points; 200 and 180 viewers in 12 shared device-hours).")
    unclear = Difference(0.05, -0.02, 0.12, 200, 180, 12)
    assert "cannot tell their happy shares apart" in describe_difference(
        "A", "B", "happy", unclear, {}, 30)
    few = Difference(0.5, 0.1, 0.9, 12, 180, 3)
    assert "not enough viewers" in describe_difference("A", "B", "happy", few, {}, 30)
    none = describe_difference("A", "B", "sad", None, {"A": 50, "B": 40}, 30)
    assert "never both seen by the same device in the same hour" in none and "50 and 40" in none


def test_describe_difference_without_variance_is_not_enough_viewers() -> None:
    text = describe_difference("A", "B", "happy", None, {"A": 5, "B": 4}, 30, (5, 4))
    assert text == ("A vs B: not enough viewers to tell their happy shares apart: 5 and 4 "
                    "classified viewers in shared device-hours, at least 30 each are needed.")
