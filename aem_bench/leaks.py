"""Does anything but memory carry a memory task's hidden fact? The leak checks.

A memory task is only a memory task if, once the cue is gone, nothing a policy observes still
tells the fact. Two places can hide it, each probed the same way (``PROBED``):

- ``"qpos"``, the robot's own body: an arm that already reacted to the cue, or that reached the
  decision along a path that depends on the fact, carries the fact in its joint angles, and a
  policy that reads them needs no memory (PutBackBlock-v0 was such a task);
- ``"scene"``, the objects: the state observation (``obs_mode="state"``, the position and
  quaternion of every task object, :meth:`TableTopEnv.object_state`) after the cue, where a
  layout that depends on the fact, or a cue still on the table, would give it away. It holds
  objects the cameras cannot see (a ball under a cup) and no colours, so a leak found here is a
  leak to a policy that reads the state observation, not necessarily to one that reads pixels.

:func:`leak_checks` runs the expert on a task in state mode, takes the probed vectors at the step
the cue leaves the frame (``cue_hidden_at``) and at the decision step (``decision_at``), and fits
the probe's linear classifier (:func:`aem_bench.probe._probe_accuracy`: logistic regression on
standardised inputs, stratified k-fold cross-validation over episodes) to ``hidden_fact()``.

The rule (``LEAK_RULE``): the probed vector carries the fact at a moment when the lower end of the
probe accuracy's 95% Wilson interval lies above the share of the commonest value (what always
guessing it scores).

A task that declares a pooled probe target (``pooled_probe``, its rows from
``pooled_probe_rows()``; SwapBlocks: the moves done at the step each move begins) gets it probed
too, on the same episodes, as ``aem-bench probe`` does for a memory: every episode's rows pooled,
cross-validated with each episode's rows in one fold (stratified group k-fold), under the same
rule (``result["pooled"]``).

``resolution`` rounds every probed value to that step first (radians for the joints, metres and
quaternion units for the scene), as a sensor with that resolution would read it: the probe
standardises its inputs, so without it a difference of a few float32 steps, far below anything
a policy trained on normalised joint angles could use, is as readable as a large one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np

from aem_bench.errors import UsageError
from aem_bench.expert import ExpertShortfall, run_expert
from aem_bench.probe import _probe_accuracy, moments_after_episode
from aem_bench.provenance import git_commit
from aem_bench.stats import wilson_interval

LEAK_MOMENTS = ("cue_hidden", "decision")
LEAK_RULE = ("the probed vector carries the fact at a moment when the lower end of the probe's "
             "95% Wilson interval lies above the commonest value's share")
# What can be probed: a description for the results, and how to read it from the task.
PROBED: dict[str, tuple[str, Callable[[gym.Env], np.ndarray]]] = {
    "qpos": ("joint state (env.unwrapped.qpos)", lambda task: task.qpos),
    "scene": (("object poses (the state observation: position and quaternion of every task "
               "object, env.unwrapped.object_state())"), lambda task: task.object_state()),
}


def _check_arguments(what: Sequence[str], episodes: int, folds: int) -> None:
    if not what:
        raise ValueError(f"nothing to probe: what must name one or more of {', '.join(PROBED)}")
    for name in what:
        if name not in PROBED:
            raise ValueError(f"unknown probed vector {name!r}; expected one of "
                             f"{', '.join(map(repr, PROBED))}")
    if episodes < 2 * folds:
        raise ValueError(f"episodes must be at least 2 * folds = {2 * folds}, got {episodes}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")


def _expert_vectors(env_id: str, what: Sequence[str], episodes: int, first_seed: int,
                    resolution: float | None = None, **env_kwargs) -> dict:
    """The probed vectors at each moment of the expert's first ``episodes`` successful episodes
    from ``first_seed`` on (at most ``2 * episodes + 10`` seeds tried), with their facts."""
    env = gym.make(env_id, obs_mode="state", **env_kwargs)
    task = env.unwrapped
    if task.fact_size == 0:
        env.close()
        raise ValueError(f"{env_id} declares no hidden fact: the check needs a memory task")
    readers = {name: PROBED[name][1] for name in what}
    rows = {name: {moment: [] for moment in LEAK_MOMENTS} for name in what}
    steps: dict[str, list[int]] = {moment: [] for moment in LEAK_MOMENTS}
    facts, seeds = [], []
    # The pooled probe's rows (tasks that declare one): vectors, labels, steps, episode index.
    pooled = {"rows": {name: [] for name in what}, "labels": [], "steps": [], "groups": []}
    tries = range(first_seed, first_seed + 2 * episodes + 10)

    def read() -> dict[str, np.ndarray]:
        values = {name: np.asarray(reader(task), dtype=np.float64)
                  for name, reader in readers.items()}
        if resolution is not None:
            values = {name: np.round(v / resolution) * resolution for name, v in values.items()}
        return values

    try:
        for episode_seed in tries:
            # Read before each action: trace[k] is the state after k steps, the indexing of
            # cue_hidden_at and decision_at.
            trace: list[dict[str, np.ndarray]] = []
            result = run_expert(env, episode_seed,
                                on_step=lambda _, into=trace: into.append(read()))
            if not result.success:
                continue  # a failed episode may have no decision; the demonstrations skip it too
            trace.append(read())
            marks = moments_after_episode(env_id, task, episode_seed)
            for moment in LEAK_MOMENTS:
                step = min(marks.steps[moment], len(trace) - 1)
                steps[moment].append(step)
                for name in what:
                    rows[name][moment].append(trace[step][name])
            for step, label in marks.pooled:
                step = min(step, len(trace) - 1)
                for name in what:
                    pooled["rows"][name].append(trace[step][name])
                pooled["labels"].append(label)
                pooled["steps"].append(step)
                pooled["groups"].append(len(facts))
            facts.append(marks.fact)
            seeds.append(episode_seed)
            if len(facts) == episodes:
                break
    finally:
        env.close()
    if len(facts) < episodes:
        raise ExpertShortfall(f"the expert of {env_id} solved only {len(facts)} of seeds "
                              f"{tries.start}-{tries.stop - 1}, not the {episodes} asked for")
    return {"rows": rows, "steps": steps, "facts": np.array(facts), "seeds": seeds,
            "pooled": pooled if pooled["labels"] else None,
            "pooled_probe": task.pooled_probe}


def _pooled_entry(vectors: dict, name: str, folds: int, seed: int) -> dict:
    """The pooled probe on the rows of the probed vector ``name``: accuracy over rows with its
    95% Wilson interval, per label, and whether it carries the label (``LEAK_RULE``)."""
    pooled = vectors["pooled"]
    labels, steps = np.array(pooled["labels"]), np.array(pooled["steps"])
    values, counts = np.unique(labels, return_counts=True)
    majority = float(counts.max() / counts.sum())
    correct = _probe_accuracy(np.stack(pooled["rows"][name]), labels, folds, seed,
                              groups=np.array(pooled["groups"]))
    low, high = wilson_interval(int(correct.sum()), len(correct))
    target, probed = vectors["pooled_probe"]
    return {"target": target, "probed": probed, "rows": len(labels),
            "label_counts": {str(v): int(c) for v, c in zip(values, counts)},
            "step_median_by_label": {str(v): float(np.median(steps[labels == v]))
                                     for v in values},
            "majority_rate": majority, "accuracy": float(correct.mean()), "ci95": [low, high],
            "accuracy_by_label": {str(v): float(correct[labels == v].mean()) for v in values},
            "carries_label": bool(low > majority),
            "probe": "logistic regression on standardised inputs, stratified group "
                     f"{folds}-fold cross-validation, each episode's rows in one fold"}


def leak_checks(env_id: str, what: Sequence[str] = ("qpos",), episodes: int = 100,
                first_seed: int = 0, folds: int = 5, seed: int = 0,
                resolution: float | None = None, **env_kwargs) -> list[dict]:
    """Probe each vector named in ``what`` (keys of ``PROBED``) for ``env_id``'s hidden fact, on
    the same expert episodes (one run of the expert for all): one result per name. With
    ``resolution``, every value is rounded to that step before the probe."""
    what = list(what)
    _check_arguments(what, episodes, folds)
    if resolution is not None and not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    vectors = _expert_vectors(env_id, what, episodes, first_seed, resolution, **env_kwargs)
    labels = vectors["facts"]
    values, counts = np.unique(labels, return_counts=True)
    if len(values) < 2:
        raise UsageError("episodes", f"the expert's {episodes} episodes of {env_id} all have the "
                         "same hidden fact; the probe needs at least two of its values")
    majority = float(counts.max() / counts.sum())
    results = []
    for name in what:
        moments = []
        for moment in LEAK_MOMENTS:
            correct = _probe_accuracy(np.stack(vectors["rows"][name][moment]), labels, folds, seed)
            low, high = wilson_interval(int(correct.sum()), len(correct))
            moments.append({"moment": moment,
                            "step_median": float(np.median(vectors["steps"][moment])),
                            "accuracy": float(correct.mean()), "ci95": [low, high],
                            "carries_fact": bool(low > majority)})
        results.append({
            "task": env_id,
            "probed": name,
            "input": f"{PROBED[name][0]}, expert episodes, state mode"
                     + ("" if resolution is None else f", rounded to steps of {resolution:g}"),
            "episodes": len(labels),
            "seeds": vectors["seeds"],
            "fact_values": len(values),
            "majority_rate": majority,
            "moments": moments,
            "carries_fact": any(entry["carries_fact"] for entry in moments),
            "rule": LEAK_RULE,
            "probe": "logistic regression on standardised inputs, stratified "
                     f"{folds}-fold cross-validation over episodes",
            "git_commit": git_commit(),
        })
        if vectors["pooled"] is not None:
            results[-1]["pooled"] = _pooled_entry(vectors, name, folds, seed)
    return results


def pooled_table(results: list[dict], table_format: str = "simple") -> str:
    """The pooled probes of ``results`` (those of tasks that declare one), a row each."""
    from tabulate import tabulate

    rows = []
    for result in results:
        pooled = result.get("pooled")
        if pooled is None:
            continue
        low, high = pooled["ci95"]
        by_label = " / ".join(f"{100 * pooled['accuracy_by_label'][label]:.0f}%"
                              for label in pooled["label_counts"])
        rows.append([result["task"], result["probed"], pooled["target"], pooled["rows"],
                     f"{100 * pooled['majority_rate']:.0f}%",
                     f"{100 * pooled['accuracy']:.1f}% ({100 * low:.1f}-{100 * high:.1f})",
                     by_label, "yes" if pooled["carries_label"] else "no"])
    return tabulate(rows, headers=["task", "probed", "pooled target", "rows", "commonest value",
                                   "probe there", "per value", "carries it"],
                    tablefmt=table_format)


def leak_check(env_id: str, what: str = "qpos", **kwargs) -> dict:
    """:func:`leak_checks` for one probed vector."""
    return leak_checks(env_id, (what,), **kwargs)[0]


def leak_table(results: list[dict], table_format: str = "simple") -> str:
    from tabulate import tabulate

    def cell(entry):
        low, high = entry["ci95"]
        return f"{100 * entry['accuracy']:.0f}% ({100 * low:.0f}-{100 * high:.0f})"

    rows = []
    for result in results:
        by_moment = {entry["moment"]: entry for entry in result["moments"]}
        rows.append([result["task"], result["probed"], result["episodes"], result["fact_values"],
                     f"{100 * result['majority_rate']:.0f}%",
                     f"{by_moment['cue_hidden']['step_median']:g}", cell(by_moment["cue_hidden"]),
                     f"{by_moment['decision']['step_median']:g}", cell(by_moment["decision"]),
                     "yes" if result["carries_fact"] else "no"])
    return tabulate(rows, headers=["task", "probed", "episodes", "values", "commonest value",
                                   "cue hidden (median step)", "probe there",
                                   "decision (median step)", "probe there",
                                   "carries the fact"], tablefmt=table_format)
