"""Regression tests on success rate: ``aem_bench.testing`` and its pytest fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_evaluator import COUNTDOWN, HoldPosePolicy

from aem_bench.stats import wilson_interval
from aem_bench.testing import assert_success_rate

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
    assert "AEMTest/Countdown-v0: success 10/20 = 50.0%, 95% interval [29.9%, 70.1%]" in message
    assert "below min_rate 90.0%" in message
    assert "failed seeds [11, 13, 15, 17, 19, 21, 23, 25, 27, 29]" in message


def test_min_rate_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="min_rate must be in"):
        assert_success_rate(HoldPosePolicy(), COUNTDOWN, min_rate=50, episodes=2)


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
