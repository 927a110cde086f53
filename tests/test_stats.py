"""aem_bench.stats: the Wilson interval (the aggregates across tasks are checked with the
leaderboard that shows them, in test_leaderboard.py)."""

from __future__ import annotations

import pytest

from aem_bench.stats import wilson_interval


# 95% Wilson score intervals to 4 d.p.: the first four are Newcombe (1998), Statistics in Medicine
# 17:857, Table I (method 3); the rest are the usual textbook n=10 cases.
@pytest.mark.parametrize(
    "successes, n, lo, hi",
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
    ],
)
def test_wilson_interval_matches_published_values(successes, n, lo, hi):
    got_lo, got_hi = wilson_interval(successes, n)
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
def test_wilson_interval_rejects_bad_input(successes, n, confidence, message):
    with pytest.raises(ValueError, match=message):
        wilson_interval(successes, n, confidence)
