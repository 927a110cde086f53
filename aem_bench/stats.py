"""The statistics of the benchmark, in one place: evaluation, certificates, probes and the
leaderboard all draw their intervals from here.

- :func:`wilson_interval`: a binomial proportion (a success rate on one task, a probe's accuracy),
  the default everywhere.
- :func:`clopper_pearson_interval`: the exact interval of the same proportion, for a reader who
  wants coverage of at least the nominal level at every true rate rather than about it on average;
  :func:`binomial_interval` picks either by name (``INTERVALS``).
- :func:`aggregate_success`: one policy across several tasks, the mean and the interquartile mean
  (IQM) of the per-task success rates with 95% percentile intervals from a stratified bootstrap,
  following rliable (Agarwal et al., 2021). The bootstrap resamples episodes within each task, so
  every task keeps its weight and its episode count.

Only NumPy at import, so the leaderboard can use it without the simulator; rliable and SciPy, slow
to import, are imported by the functions that need them.
"""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np


def _check_binomial(name: str, successes: int, n: int, confidence: float) -> None:
    if n <= 0:
        raise ValueError(f"{name} needs at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Chosen over the normal ("Wald") interval because it stays inside [0, 1] and does not collapse
    to zero width at 0/n or n/n, which are common outcomes for weak or strong policies.
    """
    _check_binomial("wilson_interval", successes, n, confidence)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half_width = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0/n and n/n one end is exactly 0 or 1 in theory; pin it so rounding cannot push the
    # interval off the observed rate.
    lo = 0.0 if successes == 0 else max(0.0, center - half_width)
    hi = 1.0 if successes == n else min(1.0, center + half_width)
    return lo, hi


def clopper_pearson_interval(successes: int, n: int,
                             confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson ("exact") interval for a binomial proportion, from the beta quantiles.

    It inverts two one-sided binomial tests, so its coverage is at least ``confidence`` at every
    true rate; the price is width: at small n it is wider than Wilson's, whose coverage is close
    to nominal on average but dips below it at some rates.
    """
    _check_binomial("clopper_pearson_interval", successes, n, confidence)
    from scipy.stats import beta

    tail = (1 - confidence) / 2
    lo = 0.0 if successes == 0 else float(beta.ppf(tail, successes, n - successes + 1))
    hi = 1.0 if successes == n else float(beta.ppf(1 - tail, successes + 1, n - successes))
    return lo, hi


INTERVALS = {"wilson": wilson_interval, "clopper-pearson": clopper_pearson_interval}


def check_interval(method: str) -> str:
    """``method`` if it names an interval in ``INTERVALS``; a ValueError naming them if not."""
    if method not in INTERVALS:
        raise ValueError(f"unknown interval {method!r}; expected one of "
                         f"{', '.join(map(repr, INTERVALS))}")
    return method


def binomial_interval(successes: int, n: int, confidence: float = 0.95,
                      method: str = "wilson") -> tuple[float, float]:
    """The ``method`` interval (a name in ``INTERVALS``) of ``successes`` out of ``n``."""
    return INTERVALS[check_interval(method)](successes, n, confidence)


def _success_matrix(results: list[dict]) -> tuple[list[str], np.ndarray]:
    """Tasks (sorted) and the (episodes x tasks) matrix of per-episode successes (0 or 1)."""
    if not results:
        raise ValueError("aggregate_success needs results on at least one task, got none")
    by_task = {}
    for result in results:
        task = result.get("task", "?")
        if task in by_task:
            raise ValueError(f"two results for task {task}: aggregate one result per task")
        if not result.get("records"):
            raise ValueError(f"the result for {task} has no per-episode 'records'")
        by_task[task] = [float(record["success"]) for record in result["records"]]
    policies = sorted({result.get("policy") for result in results}, key=str)
    if len(policies) > 1:
        raise ValueError(f"results of several policies ({', '.join(map(str, policies))}): "
                         "aggregate one policy at a time")
    counts = {task: len(successes) for task, successes in by_task.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{task}: {n}" for task, n in sorted(counts.items()))
        raise ValueError(f"unequal episode counts across tasks ({listed}); "
                         "the stratified bootstrap needs the same number on every task")
    tasks = sorted(by_task)
    return tasks, np.array([by_task[task] for task in tasks]).T


def aggregate_success(results: list[dict], reps: int = 2000, seed: int = 0) -> dict:
    """Mean and IQM of one policy's per-task success rates, with 95% bootstrap intervals.

    ``results`` are results dicts of one policy on distinct tasks, each with ``records`` and the
    same number of episodes. The same inputs and ``seed`` give the same intervals.
    """
    # Imported here: arch, under rliable's bootstrap, takes seconds to import.
    from rliable import library as rly
    from rliable import metrics

    def mean_and_iqm(scores: np.ndarray) -> np.ndarray:
        # Each task's success rate first, so IQM trims tasks, not single episodes.
        per_task = np.mean(scores, axis=0)
        return np.array([metrics.aggregate_mean(scores), metrics.aggregate_iqm(per_task)])

    tasks, scores = _success_matrix(results)
    # rliable 1.2's StratifiedBootstrap draws its indices from numpy's global generator and
    # ignores random_state, so seed that for the call and put the caller's state back after.
    saved_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            # arch deprecates random_state, the only seeding rliable passes on.
            warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
            points, intervals = rly.get_interval_estimates(
                {"policy": scores}, mean_and_iqm, reps=reps,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(saved_state)
    (mean, iqm), (lows, highs) = points["policy"], intervals["policy"]
    return {
        "tasks": tasks,
        "episodes_per_task": scores.shape[0],
        "mean": float(mean),
        "mean_ci95": [float(lows[0]), float(highs[0])],
        "iqm": float(iqm),
        "iqm_ci95": [float(lows[1]), float(highs[1])],
        "reps": reps,
    }
