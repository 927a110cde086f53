"""Regression tests on success rate: ``aem_bench.testing`` and its pytest fixture."""

from __future__ import annotations

import math
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from scipy.stats import binom
from test_evaluator import COUNTDOWN, CRASHING, CountdownEnv, HoldPosePolicy

from aem_bench import testing
from aem_bench.stats import wilson_interval
from aem_bench.testing import EnvironmentCrashed, assert_success_rate, fails_min_rate

pytest_plugins = ["pytester"]

# Countdown: any policy that keeps its actions finite succeeds on the even seeds, so exactly half.


def test_a_policy_passes_when_its_interval_reaches_min_rate():
    report = assert_success_rate(HoldPosePolicy(), COUNTDOWN, min_rate=0.5, episodes=20)
    assert report.successes == 10
    # 10/20 is not proof of 70%, but neither does it rule 70% out: the check must not fail.
    assert wilson_interval(10, 20)[1] > 0.7
    assert_success_rate(HoldPosePolicy(), COUNTDOWN, min_rate=0.7, episodes=20)


def test_a_policy_fails_when_the_whole_interval_is_below_min_rate():
    with pytest.raises(AssertionError) as failure:
        assert_success_rate(HoldPosePolicy(), COUNTDOWN, min_rate=0.9, episodes=20, seed=10)
    message = str(failure.value)
    assert ("AEMTest/Countdown-v0: success 10/20 = 50.0%, 95% wilson interval [29.9%, 70.1%]"
            in message)
    assert "below min_rate 90.0%" in message
    assert "failed seeds [11, 13, 15, 17, 19, 21, 23, 25, 27, 29]" in message


def test_the_exact_interval_is_chosen_by_name():
    # 10/20: Clopper-Pearson's upper end is 72.8%, Wilson's 70.1%; min_rate 0.71 tells them apart.
    assert_success_rate(HoldPosePolicy(), COUNTDOWN, min_rate=0.71, episodes=20,
                        interval="clopper-pearson")
    with pytest.raises(AssertionError, match=re.escape("95% wilson interval [29.9%, 70.1%]")):
        assert_success_rate(HoldPosePolicy(), COUNTDOWN, min_rate=0.71, episodes=20)
    with pytest.raises(AssertionError,
                       match=re.escape("95% clopper-pearson interval [27.2%, 72.8%]")):
        assert_success_rate(HoldPosePolicy(), COUNTDOWN, min_rate=0.73, episodes=20,
                            interval="clopper-pearson")


def test_min_rate_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="min_rate must be in"):
        assert_success_rate(HoldPosePolicy(), COUNTDOWN, min_rate=50, episodes=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"episodes": 0}, "episodes must be a positive integer, got 0"),
    ({"episodes": -3}, "episodes must be a positive integer, got -3"),
    ({"episodes": 2.5}, "episodes must be a positive integer, got 2.5"),
    ({"confidence": 1.0}, "confidence must be in"),
    ({"interval": "exact"}, "unknown interval 'exact'; expected one of 'wilson', 'clopper"),
])
def test_bad_episodes_or_confidence_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        assert_success_rate(HoldPosePolicy(), COUNTDOWN, min_rate=0.5, **kwargs)


def test_environment_crashes_are_not_counted_as_policy_failures():
    # Countdown succeeds on even seeds; seed 12 crashes. Counted as a failure, 1/4 would pass
    # min_rate=0.05 silently with a broken simulator; the crash must stop the check instead.
    with pytest.raises(EnvironmentCrashed) as crash:
        assert_success_rate(HoldPosePolicy(), CRASHING, min_rate=0.05, episodes=4, seed=10,
                            env_kwargs={"crash_seed": 12})
    message = str(crash.value)
    assert "crashed in 1 of 4 episodes" in message
    assert "seed 12: step 0: environment crashed: RuntimeError('simulated solver blow-up')" in message


def test_rejected_actions_count_as_policy_failures():
    with pytest.raises(AssertionError, match=r"success 0/2 .*rejected actions \{10: 'step 0:"):
        assert_success_rate(lambda: NaNPolicy(), COUNTDOWN, min_rate=0.9, episodes=2, seed=10)


class NaNPolicy(HoldPosePolicy):
    def act(self, observation):
        return np.full(16, np.nan, np.float32)


# --- The check's error rates, recomputed from the binomial distribution ----------------------------


class FirstKEnv(CountdownEnv):
    """Succeeds at the first step on seeds below ``successes_below``: exactly that many successes
    among the seeds 0, 1, ..., so the check's decision can be read for every count."""

    def __init__(self, successes_below: int):
        self.successes_below = successes_below

    def step(self, action):
        observation, _, _, _, _ = super().step(action)
        success = self._seed < self.successes_below
        return observation, float(success), True, False, {"is_success": success}


FIRST_K = "AEMTest/FirstK-v0"
gym.register(FIRST_K, entry_point=FirstKEnv, max_episode_steps=5)


def largest_failing_count(episodes: int, min_rate: float, interval: str = "wilson") -> int:
    """The most successes of ``episodes`` for which assert_success_rate fails (-1: none)."""
    largest = -1
    for k in range(episodes + 1):
        try:
            report = assert_success_rate(HoldPosePolicy(), FIRST_K, min_rate, episodes=episodes,
                                         seed=0, interval=interval,
                                         env_kwargs={"successes_below": k})
            assert report.successes == k
        except AssertionError:
            largest = k
    return largest


def docstring_tables() -> dict[str, list[list[float]]]:
    """The docstring's rows of numbers under each ``interval="NAME"`` heading."""
    tables, rows = {}, None
    for line in testing.__doc__.splitlines():
        heading = re.fullmatch(r'\s*interval="([a-z-]+)"', line)
        if heading:
            rows = tables.setdefault(heading.group(1), [])
        cells = line.replace("%", "").split()
        if len(cells) == 7 and all(re.fullmatch(r"[0-9.]+", cell) for cell in cells):
            rows.append([float(cell) for cell in cells])
    return tables


def test_the_docstring_has_a_table_per_interval():
    assert {name: len(rows) for name, rows in docstring_tables().items()} == {
        "wilson": 6, "clopper-pearson": 6}


@pytest.mark.parametrize("interval", ["wilson", "clopper-pearson"])
def test_the_docstring_states_the_exact_binomial_error_rates(interval):
    rows = docstring_tables()[interval]
    assert len(rows) == 6
    for episodes, min_rate, fails_at, *rates in rows:
        n, m = int(episodes), min_rate / 100
        # The decisions of the function itself, not of a copy of its rule.
        k = largest_failing_count(n, m, interval) if n <= 20 else max(
            (k for k in range(n + 1) if fails_min_rate(k, n, m, interval=interval)), default=-1)
        assert k == fails_at, (n, m)
        exact = [binom.cdf(k, n, m), binom.cdf(k, n, m + 0.1),
                 binom.sf(k, n, m - 0.2), binom.sf(k, n, m - 0.1)]
        assert [round(100 * rate, 1) for rate in exact] == rates, (n, m)


@pytest.mark.parametrize("interval", ["wilson", "clopper-pearson"])
@pytest.mark.parametrize("episodes, min_rate", [(20, 0.5), (20, 0.8), (10, 0.9)])
def test_fails_min_rate_is_the_rule_assert_success_rate_applies(episodes, min_rate, interval):
    largest = largest_failing_count(episodes, min_rate, interval)
    assert [fails_min_rate(k, episodes, min_rate, interval=interval)
            for k in range(episodes + 1)] == [k <= largest for k in range(episodes + 1)]


@pytest.mark.parametrize("episodes", [5, 10, 20, 30, 50, 100])
def test_with_clopper_pearson_a_policy_at_min_rate_fails_at_most_the_nominal_rate(episodes):
    # The exact binomial test: unlike Wilson's (7% at 10 episodes and min_rate 0.9), never above
    # 2.5% at confidence 0.95.
    for min_rate in [0.1, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95]:
        failing = [k for k in range(episodes + 1)
                   if fails_min_rate(k, episodes, min_rate, interval="clopper-pearson")]
        assert binom.cdf(max(failing, default=-1), episodes, min_rate) <= 0.025, min_rate


@pytest.mark.parametrize("episodes, min_rate, true_rate, false_fail, false_pass", [
    # At exactly min_rate: near the nominal one-sided 2.5%, but not equal (the binomial is discrete).
    (20, 0.5, 0.5, 0.0207, None),
    (10, 0.9, 0.9, 0.0702, None),  # the worst of the documented corner: 7%, not 2.5%
    # Well below min_rate: the weak power the docstring warns of.
    (20, 0.5, 0.3, None, 0.5836),
    (100, 0.5, 0.3, None, 0.0125),
])
def test_exact_error_rates_of_the_decision_rule(episodes, min_rate, true_rate, false_fail,
                                                false_pass):
    largest = largest_failing_count(episodes, min_rate)
    # P(fail) = P(X <= largest), summed term by term with math.comb, apart from scipy.
    p_fail = sum(math.comb(episodes, k) * true_rate**k * (1 - true_rate)**(episodes - k)
                 for k in range(largest + 1))
    if false_fail is not None:
        assert p_fail == pytest.approx(false_fail, abs=1e-4)
        assert p_fail > 0.01  # a policy exactly at min_rate does fail now and then
    if false_pass is not None:
        assert 1 - p_fail == pytest.approx(false_pass, abs=1e-4)


EXAMPLE = """
import test_evaluator

def test_hold_pose_is_half_right(success_rate):
    report = success_rate(test_evaluator.HoldPosePolicy(), test_evaluator.COUNTDOWN,
                          min_rate=0.5, episodes=4)
    assert len(report.records) == EPISODES

def test_hold_pose_is_not_always_right(success_rate):
    success_rate(test_evaluator.HoldPosePolicy(), test_evaluator.COUNTDOWN, min_rate=0.99,
                 episodes=4)
"""


@pytest.mark.parametrize("option, episodes", [([], 4), (["--success-episodes", "30"], 30)])
def test_the_fixture_is_installed_with_the_package(pytester, monkeypatch, option, episodes):
    """The plugin comes from the package's pytest11 entry point: no conftest needed."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # for test_evaluator's env
    pytester.makepyfile(EXAMPLE.replace("EPISODES", str(episodes)))
    result = pytester.runpytest_subprocess(*option, "-p", "no:cacheprovider",
                                           "--junitxml=report.xml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*below min_rate 99.0%*failed seeds*"])
    half = episodes // 2
    assert f'name="success_rate[AEMTest/Countdown-v0]" value="{half}/{episodes}"' in (
        pytester.path / "report.xml").read_text()


@pytest.mark.parametrize("value, shown", [("0", "0"), ("-2", "-2"), ("many", "'many'")])
def test_success_episodes_must_be_a_positive_integer(pytester, monkeypatch, value, shown):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    pytester.makepyfile(EXAMPLE.replace("EPISODES", "4"))
    result = pytester.runpytest_subprocess("--success-episodes", value, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    expected = f"*argument --success-episodes: expected a positive integer, got {shown}*"
    result.stderr.fnmatch_lines([expected])
