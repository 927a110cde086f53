"""aem_bench.stats: the Wilson and Clopper-Pearson intervals (the aggregates across tasks are
checked with the leaderboard that shows them, in test_leaderboard.py)."""

from __future__ import annotations

import math

import pytest

from aem_bench.stats import (
    INTERVALS,
    binomial_interval,
    clopper_pearson_interval,
    wilson_interval,
)

# 95% intervals to 4 d.p. The first four cases of each method are Newcombe (1998), Statistics in
# Medicine 17:857, Table I (Wilson: method 3; Clopper-Pearson, "exact": method 5); the rest are
# the usual textbook n=10 cases.
PUBLISHED = {
    "wilson": [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
               (1, 29, 0.0061, 0.1718), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0),
               (5, 10, 0.2366, 0.7634)],
    "clopper-pearson": [(81, 263, 0.2527, 0.3676), (15, 148, 0.0578, 0.1617),
                        (0, 20, 0.0, 0.1684), (1, 29, 0.0009, 0.1776), (0, 10, 0.0, 0.3085),
                        (10, 10, 0.6915, 1.0), (5, 10, 0.1871, 0.8129)],
}


@pytest.mark.parametrize(("method", "successes", "n", "lo", "hi"),
                         [(method, *case) for method, cases in PUBLISHED.items()
                          for case in cases])
def test_intervals_match_published_values(method, successes, n, lo, hi):
    interval = {"wilson": wilson_interval, "clopper-pearson": clopper_pearson_interval}[method]
    got_lo, got_hi = interval(successes, n)
    assert got_lo == pytest.approx(lo, abs=1e-4)
    assert got_hi == pytest.approx(hi, abs=1e-4)


def test_wilson_interval_edges_are_exact_and_wider_at_higher_confidence():
    assert wilson_interval(0, 7)[0] == 0.0
    assert wilson_interval(7, 7)[1] == 1.0
    lo95, hi95 = wilson_interval(5, 10)
    lo99, hi99 = wilson_interval(5, 10, confidence=0.99)
    assert lo99 < lo95 and hi99 > hi95


@pytest.mark.parametrize(
    "successes, n, confidence, message",
    [
        (0, 0, 0.95, "n=0"),
        (11, 10, 0.95, "successes"),
        (-1, 10, 0.95, "successes"),
        (5, 10, 1.0, "confidence"),
    ],
)
@pytest.mark.parametrize("interval", [wilson_interval, clopper_pearson_interval])
def test_intervals_reject_bad_input(interval, successes, n, confidence, message):
    with pytest.raises(ValueError, match=message):
        interval(successes, n, confidence)


def coverage(interval, n: int, rate: float) -> float:
    """The exact probability that ``interval`` of a Binomial(n, rate) count contains ``rate``."""
    return sum(math.comb(n, k) * rate**k * (1 - rate)**(n - k)
               for k in range(n + 1) if interval(k, n)[0] <= rate <= interval(k, n)[1])


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.1, 0.2, 0.3, 0.37, 0.5, 0.63, 0.8, 0.9, 0.95])
def test_clopper_pearson_covers_at_least_the_nominal_level_at_every_rate(rate):
    assert coverage(clopper_pearson_interval, 20, rate) >= 0.95


def test_wilson_covers_less_than_nominal_at_some_rates_where_clopper_pearson_does_not():
    # The reason to offer the exact interval: at n=20 and a true rate of 5% Wilson's 95% interval
    # contains the rate only 92.5% of the time.
    assert coverage(wilson_interval, 20, 0.05) == pytest.approx(0.9245, abs=1e-4)
    assert coverage(clopper_pearson_interval, 20, 0.05) > 0.98


@pytest.mark.parametrize("n", [1, 5, 10, 20, 30])
def test_clopper_pearson_contains_wilson_at_small_n(n):
    for k in range(n + 1):
        (cp_lo, cp_hi), (w_lo, w_hi) = clopper_pearson_interval(k, n), wilson_interval(k, n)
        assert cp_lo <= w_lo and w_hi <= cp_hi, (k, n)


def test_binomial_interval_picks_by_name_and_refuses_an_unknown_one():
    assert set(INTERVALS) == {"wilson", "clopper-pearson"}
    assert binomial_interval(5, 10) == wilson_interval(5, 10)
    assert binomial_interval(5, 10, 0.9, "clopper-pearson") == clopper_pearson_interval(5, 10, 0.9)
    with pytest.raises(ValueError, match="unknown interval 'exact'; expected one of 'wilson', "
                                         "'clopper-pearson'"):
        binomial_interval(5, 10, method="exact")
