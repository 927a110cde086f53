"""One policy's success across several tasks: mean and IQM with stratified-bootstrap intervals.

A per-task table answers "how good is it on this task"; a suite needs one number with an honest
interval. Following rliable (Agarwal et al., 2021), the mean and the interquartile mean (IQM) of
the per-task success rates come with 95% percentile intervals from a bootstrap that resamples
episodes within each task, so every task keeps its weight and its episode count.
"""

from __future__ import annotations

import warnings

import numpy as np


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
