"""Regression tests on success rate, for any project that trains or changes a policy.

A success rate measured on a few dozen episodes is noisy: a policy that succeeds 80% of the time
gets 15/20 or 19/20 by chance. :func:`assert_success_rate` therefore fails only when the whole 95%
Wilson interval lies below ``min_rate``, that is when the data make it unlikely that the true rate
reaches ``min_rate``; a good policy does not fail by bad luck. Episodes run on the expert-solvable
seeds from ``seed`` on (by default the protocol's ``aem_bench.seeds.EVAL_SEED_START``), so the
same call evaluates the same episodes every time::

    from aem_bench.testing import assert_success_rate

    def test_my_policy_still_hands_over():
        assert_success_rate(load_policy("runs/ckpt"), "AEM/HandoverBlock-v0", min_rate=0.5,
                            episodes=20)

Installing aem-bench also gives pytest the ``success_rate`` fixture (a pytest plugin): the same
function, with ``--success-episodes N`` on the pytest command line overriding every test's
episode count (few for a quick run, many for a release), and each measured rate recorded in the
test's ``user_properties`` (so it lands in JUnit XML).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aem_bench.evaluator import EvalReport, Policy, evaluate
from aem_bench.seeds import EVAL_SEED_START
from aem_bench.stats import wilson_interval


def assert_success_rate(policy: Policy | Callable[[], Policy], env_id: str, min_rate: float,
                        episodes: int = 20, seed: int = EVAL_SEED_START, confidence: float = 0.95,
                        **evaluate_kwargs) -> EvalReport:
    """Evaluate ``policy`` and fail if the upper end of the success interval is below
    ``min_rate``. Returns the report (records, latency) for further checks."""
    if not 0 <= min_rate <= 1:
        raise ValueError(f"min_rate must be in [0, 1], got {min_rate}")
    evaluate_kwargs.setdefault("progress", False)
    report = evaluate(policy, env_id, episodes, seed=seed, **evaluate_kwargs)
    successes, n = report.successes, len(report.records)
    lo, hi = wilson_interval(successes, n, confidence)
    if hi < min_rate:
        failed = [record.seed for record in report.records if not record.success]
        errors = {record.seed: record.error for record in report.records if record.error}
        raise AssertionError(
            f"{env_id}: success {successes}/{n} = {successes / n:.1%}, {confidence:.0%} interval "
            f"[{lo:.1%}, {hi:.1%}] lies below min_rate {min_rate:.1%}; failed seeds {failed}"
            + (f"; errors {errors}" if errors else ""))
    return report


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--success-episodes", type=int, default=None,
                     help="aem-bench: episodes for every success_rate check (overrides the test)")


@pytest.fixture
def success_rate(request: pytest.FixtureRequest) -> Callable[..., EvalReport]:
    """:func:`assert_success_rate`, honouring ``--success-episodes`` and recording the rate."""
    override = request.config.getoption("--success-episodes")

    def check(policy, env_id: str, min_rate: float, episodes: int = 20, **kwargs) -> EvalReport:
        report = assert_success_rate(policy, env_id, min_rate,
                                     episodes=override or episodes, **kwargs)
        request.node.user_properties.append(
            (f"success_rate[{env_id}]", f"{report.successes}/{len(report.records)}"))
        return report

    return check
