"""Does anything but memory carry a memory task's hidden fact? The body-leak check.

A memory task is only a memory task if, once the cue is gone, nothing a policy observes still
tells the fact. The first place it can hide is the robot's own body: an arm that already reacted
to the cue, or that reached the decision along a path that depends on the fact, carries the fact
in its joint angles, and a policy that reads them needs no memory (PutBackBlock-v0 was such a
task). :func:`body_leak` runs the expert on a task in state mode, takes the joint state
(``env.unwrapped.qpos``) at the step the cue leaves the frame (``cue_hidden_at``) and at the
decision step (``decision_at``), and fits the probe's linear classifier
(:func:`aem_bench.probe._probe_accuracy`: logistic regression on standardised inputs, stratified
k-fold cross-validation) to ``hidden_fact()``.

The rule (``LEAK_RULE``): the body carries the fact at a moment when the lower end of the probe
accuracy's 95% Wilson interval lies above the share of the commonest value (what always guessing
it scores). The check covers the joint state only, not the scene after the cue (a lid left
ajar, a cube's position).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from aem_bench.expert import run_expert
from aem_bench.probe import _probe_accuracy, moments_after_episode
from aem_bench.provenance import git_commit
from aem_bench.stats import wilson_interval

LEAK_MOMENTS = ("cue_hidden", "decision")
LEAK_RULE = ("the joint state carries the fact at a moment when the lower end of the probe's "
             "95% Wilson interval lies above the commonest value's share")


def body_leak(env_id: str, episodes: int = 100, first_seed: int = 0, folds: int = 5,
              seed: int = 0, **env_kwargs) -> dict:
    """Probe the joint state for ``env_id``'s hidden fact on the expert's first ``episodes``
    successful episodes from ``first_seed`` on (at most ``2 * episodes + 10`` seeds tried)."""
    if episodes < 2 * folds:
        raise ValueError(f"episodes must be at least 2 * folds = {2 * folds}, got {episodes}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    env = gym.make(env_id, obs_mode="state", **env_kwargs)
    task = env.unwrapped
    if task.fact_size == 0:
        env.close()
        raise ValueError(f"{env_id} declares no hidden fact: the check needs a memory task")
    rows: dict[str, list[np.ndarray]] = {moment: [] for moment in LEAK_MOMENTS}
    steps: dict[str, list[int]] = {moment: [] for moment in LEAK_MOMENTS}
    facts, seeds = [], []
    tries = range(first_seed, first_seed + 2 * episodes + 10)
    try:
        for episode_seed in tries:
            trace: list[np.ndarray] = []
            # qpos before each action: trace[k] is the joint state after k steps, the indexing
            # of cue_hidden_at and decision_at.
            result = run_expert(env, episode_seed,
                                on_step=lambda _, into=trace: into.append(task.qpos.astype(np.float64)))
            if not result.success:
                continue  # a failed episode may have no decision; the demonstrations skip it too
            trace.append(task.qpos.astype(np.float64))
            marks = moments_after_episode(env_id, task, episode_seed)
            for moment in LEAK_MOMENTS:
                step = min(marks.steps[moment], len(trace) - 1)
                rows[moment].append(trace[step])
                steps[moment].append(step)
            facts.append(marks.fact)
            seeds.append(episode_seed)
            if len(facts) == episodes:
                break
    finally:
        env.close()
    if len(facts) < episodes:
        raise ValueError(f"the expert of {env_id} solved only {len(facts)} of seeds "
                         f"{tries.start}-{tries.stop - 1}, not the {episodes} asked for")
    labels = np.array(facts)
    values, counts = np.unique(labels, return_counts=True)
    majority = float(counts.max() / counts.sum())
    moments = []
    for moment in LEAK_MOMENTS:
        correct = _probe_accuracy(np.stack(rows[moment]), labels, folds, seed)
        low, high = wilson_interval(int(correct.sum()), len(correct))
        moments.append({"moment": moment, "step_median": float(np.median(steps[moment])),
                        "accuracy": float(correct.mean()), "ci95": [low, high],
                        "body_carries_fact": bool(low > majority)})
    return {
        "task": env_id,
        "input": "joint state (env.unwrapped.qpos), expert episodes, state mode",
        "episodes": len(labels),
        "seeds": seeds,
        "fact_values": len(values),
        "majority_rate": majority,
        "moments": moments,
        "body_carries_fact": any(entry["body_carries_fact"] for entry in moments),
        "rule": LEAK_RULE,
        "probe": "logistic regression on standardised inputs, stratified "
                 f"{folds}-fold cross-validation over episodes",
        "git_commit": git_commit(),
    }


def leak_table(results: list[dict], table_format: str = "simple") -> str:
    from tabulate import tabulate

    def cell(entry):
        low, high = entry["ci95"]
        return f"{100 * entry['accuracy']:.0f}% ({100 * low:.0f}-{100 * high:.0f})"

    rows = []
    for result in results:
        by_moment = {entry["moment"]: entry for entry in result["moments"]}
        rows.append([result["task"], result["episodes"], result["fact_values"],
                     f"{100 * result['majority_rate']:.0f}%",
                     f"{by_moment['cue_hidden']['step_median']:g}", cell(by_moment["cue_hidden"]),
                     f"{by_moment['decision']['step_median']:g}", cell(by_moment["decision"]),
                     "yes" if result["body_carries_fact"] else "no"])
    return tabulate(rows, headers=["task", "episodes", "values", "commonest value",
                                   "cue hidden (median step)", "qpos probe there",
                                   "decision (median step)", "qpos probe there",
                                   "body carries the fact"], tablefmt=table_format)
