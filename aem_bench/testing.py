"""Regression tests on success rate, for any project that trains or changes a policy.

:func:`assert_success_rate` runs ``episodes`` episodes on the expert-solvable seeds from ``seed`` on
(the same episodes every time) and fails when the upper end of the two-sided ``confidence``
interval of the success rate lies below ``min_rate``. The interval is Wilson's unless
``interval="clopper-pearson"`` asks for the exact one (``aem_bench.stats.INTERVALS``)::

    from aem_bench.testing import assert_success_rate

    def test_my_policy_still_hands_over():
        assert_success_rate(load_policy("runs/ckpt"), "AEM/HandoverBlock-v0", min_rate=0.5,
                            episodes=20)

What the check is
    A one-sided test of "the true rate is at least ``min_rate``" at a nominal 2.5% level (with the
    default ``confidence=0.95``). With Wilson's interval, the inversion of the binomial score test,
    it is not exact: the binomial is discrete, so the real rate of failing a policy whose true rate
    is exactly ``min_rate`` is whatever the binomial gives for the counts that fail, between 2% and
    3.5% in the table below (up to 7% at 10 episodes and ``min_rate=0.9``). With Clopper-Pearson's
    it is the exact binomial test: that rate never exceeds 2.5%, and the check fails on fewer
    counts, so it misses more regressions. A policy above ``min_rate`` fails less often, one 0.1
    above almost never.

What it cannot do
    Catch a moderate regression with few episodes. The check fails only on counts the data make
    implausible for ``min_rate``; a worse policy often does not produce them. Worked example: at 20
    episodes and ``min_rate=0.5`` it fails only at 5 successes or fewer, so a policy whose true rate
    is 30% passes with probability P(X >= 6 | n=20, p=0.3) = 58.4%, more often than not. To catch a
    drop of 0.1 or 0.2 reliably, use 100 episodes or more.

Exact binomial error rates of the check at ``confidence=0.95`` (``tests/test_testing.py``
recomputes every number from the binomial distribution and the function's own decisions)::

    interval="wilson"
    episodes  min_rate  fails at <=  false fail  false fail  false pass  false pass
                                     p=min       p=min+0.1   p=min-0.2   p=min-0.1
          20       50%            5        2.1%        0.2%       58.4%       87.4%
          20       80%           12        3.2%        0.0%       41.6%       77.2%
          50       50%           18        3.2%        0.1%       14.1%       66.4%
          50       80%           34        3.1%        0.0%        9.6%       56.9%
         100       50%           40        2.8%        0.0%        1.2%       45.7%
         100       80%           72        3.4%        0.0%        0.5%       29.6%

    interval="clopper-pearson"
    episodes  min_rate  fails at <=  false fail  false fail  false pass  false pass
                                     p=min       p=min+0.1   p=min-0.2   p=min-0.1
          20       50%            5        2.1%        0.2%       58.4%       87.4%
          20       80%           11        1.0%        0.0%       59.6%       88.7%
          50       50%           17        1.6%        0.0%       21.8%       76.3%
          50       80%           33        1.4%        0.0%       15.6%       68.4%
         100       50%           39        1.8%        0.0%        2.1%       53.8%
         100       80%           71        2.0%        0.0%        0.8%       37.7%

An episode in which the environment crashed (at reset or in a step, as opposed to rejecting the
policy's action) says nothing about the policy: the check does not count it as a failure but
raises :class:`EnvironmentCrashed`, naming the seeds, so that a broken simulator is not read as
a regression.

Installing aem-bench also gives pytest the ``success_rate`` fixture (a pytest plugin): the same
function, with ``--success-episodes N`` (a positive integer) on the pytest command line overriding
every test's episode count (few for a quick run, many for a release), and each measured rate
recorded in the test's ``user_properties`` (so it lands in JUnit XML).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from aem_bench.evaluator import EvalReport, Policy, evaluate
from aem_bench.seeds import EVAL_SEED_START
from aem_bench.stats import binomial_interval, check_interval


class EnvironmentCrashed(RuntimeError):
    """The environment crashed in some episodes, so the success rate does not measure the policy."""


def fails_min_rate(successes: int, episodes: int, min_rate: float, confidence: float = 0.95,
                   interval: str = "wilson") -> bool:
    """The decision rule of :func:`assert_success_rate`: True when ``successes`` of ``episodes``
    put the whole ``confidence`` interval (named by ``interval``) below ``min_rate``."""
    return binomial_interval(successes, episodes, confidence, interval)[1] < min_rate


def assert_success_rate(policy: Policy | Callable[[], Policy], env_id: str, min_rate: float,
                        episodes: int = 20, seed: int = EVAL_SEED_START, confidence: float = 0.95,
                        interval: str = "wilson", **evaluate_kwargs) -> EvalReport:
    """Evaluate ``policy`` and raise AssertionError if the upper end of the two-sided
    ``confidence`` interval of its success rate (Wilson's, or Clopper-Pearson's with
    ``interval="clopper-pearson"``) is below ``min_rate`` (the module's docstring gives the
    test's error rates). Raises :class:`EnvironmentCrashed` if the environment
    crashed in any episode. Returns the report (records, latency) for further checks."""
    if not 0 <= min_rate <= 1:
        raise ValueError(f"min_rate must be in [0, 1], got {min_rate}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    check_interval(interval)  # before the episodes are spent
    evaluate_kwargs.setdefault("progress", False)
    from aem_bench.checkpoint_eval import zoo_parts  # a zoo policy's report names its parts

    for part, value in zoo_parts(policy).items():
        evaluate_kwargs[part] = evaluate_kwargs.get(part) or value
    report = evaluate(policy, env_id, episodes, seed=seed, **evaluate_kwargs)
    crashed = [f"seed {record.seed}: {record.error}" for record in report.records
               if record.environment_crashed]
    if crashed:
        raise EnvironmentCrashed(
            f"{env_id}: the environment crashed in {len(crashed)} of {len(report.records)} "
            f"episodes, which say nothing about the policy, so no success rate is asserted; "
            + "; ".join(crashed))
    successes, n = report.successes, len(report.records)
    if fails_min_rate(successes, n, min_rate, confidence, interval):
        lo, hi = binomial_interval(successes, n, confidence, interval)
        failed = [record.seed for record in report.records if not record.success]
        errors = {record.seed: record.error for record in report.records if record.error}
        raise AssertionError(
            f"{env_id}: success {successes}/{n} = {successes / n:.1%}, {confidence:.0%} "
            f"{interval} interval [{lo:.1%}, {hi:.1%}] lies below min_rate {min_rate:.1%}; "
            f"failed seeds {failed}"
            + (f"; rejected actions {errors}" if errors else ""))
    return report


def _positive_episodes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {value}: a success rate needs at least one episode")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--success-episodes", type=_positive_episodes, default=None,
                     help="aem-bench: episodes for every success_rate check (overrides the test)")


@pytest.fixture
def success_rate(request: pytest.FixtureRequest) -> Callable[..., EvalReport]:
    """:func:`assert_success_rate`, honouring ``--success-episodes`` and recording the rate."""
    override = request.config.getoption("--success-episodes")

    def check(policy, env_id: str, min_rate: float, episodes: int = 20, **kwargs) -> EvalReport:
        report = assert_success_rate(policy, env_id, min_rate,
                                     episodes=episodes if override is None else override,
                                     **kwargs)
        request.node.user_properties.append(
            (f"success_rate[{env_id}]", f"{report.successes}/{len(report.records)}"))
        return report

    return check
