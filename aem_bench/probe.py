"""Does a memory hold the hidden fact? Linear probes on a policy's memory, on expert episodes.

For a memory task's demonstrations and a checkpoint with a memory (a recurrent memory, AEM's
history, a frame stack), :func:`probe` computes the memory vector at every step as the policy does
at run time (``VisuomotorPolicy.memory_trace``), takes it at chosen moments of each episode, and
fits a linear classifier (scikit-learn's logistic regression on standardised inputs) to the hidden
fact, the task's ``hidden_fact()``. Accuracy is cross-validated with whole episodes held out
(stratified k-fold over episodes: each episode gives one row per moment, so no episode is in
both the training and the test fold) and reported per episode with a 95% Wilson interval.

The same probe runs beside it on inputs without memory, because only the difference is memory:

- ``frame``: the current frame's features (the policy's own frozen encoder) plus the joint state;
- ``qpos``: the joint state alone (an arm that already reacted to the cue carries the fact in its
  pose);
- ``random_memory``: a memory of the same architecture with freshly initialised weights, over the
  same frames (what the architecture gives without learning).

Beside it, for a policy whose memory is one vector (a recurrent memory, AEM's history), the
memory-swap test (:mod:`aem_bench.memory_use`) asks whether the head acts on that vector, and on
the fact in it, at the probed rows: "held" from the probe, "used" from the swap.

Moments, per episode, from a state-mode replay of the episode's seed (the task records them):
``cue_visible`` (the last step the cue is in the frame: there the frame probe says whether the
frame features show the fact at all), ``cue_hidden`` (the step the cue leaves the frame),
``decision`` (the first step at which the fact decides the expert's action, the task's
``decision_at``) and ``midway`` between them. The decision
step is the one that matters: a memory that holds the fact there can be acted on. A probe that
reads the fact from the memory but a policy that still fails says "held but unused"; a probe at
chance says "not in the memory".

A task whose hidden fact at one moment is not what its memory must hold declares a
``pooled_probe`` (SwapBlocks: once it is known that one move is done, the layout gives the
starting trays; what the frame cannot say is how many moves are done). Its
``pooled_probe_rows()`` give, per episode, the steps to read and a label at each; every
episode's rows go into one probe, cross-validated with whole episodes held out (stratified group
k-fold), and that probe is the result's top level, the per-moment probes of the hidden fact
kept beside it. Its interval counts rows, several from each episode, so it is narrower than
one over episodes would be.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from aem_bench.demos import load_demos
from aem_bench.errors import InputError, UsageError
from aem_bench.expert import run_expert
from aem_bench.memory_use import SwapRows, swap_test, takes_swap_test
from aem_bench.provenance import command_line, git_commit
from aem_bench.registration import TASKS, task_class
from aem_bench.stats import wilson_interval

PROBE_DIR = Path("leaderboard/probes")
MOMENTS = ("cue_visible", "cue_hidden", "midway", "decision")
INPUTS = ("memory", "frame", "qpos", "random_memory")


@dataclass
class EpisodeMoments:
    fact: int
    steps: dict[str, int]  # moment -> step
    pooled: list[tuple[int, int]] = field(default_factory=list)  # (step, label), pooled_probe's


def episode_moments(env_id: str, env_kwargs: dict, seeds: list[int]) -> list[EpisodeMoments]:
    """Replay the expert on each seed without rendering and read the task's hidden fact, the step
    its cue left the frame and its decision step."""
    kwargs = {k: v for k, v in env_kwargs.items() if k not in ("obs_mode", "camera_size")}
    env = gym.make(env_id, obs_mode="state", **kwargs)
    task = env.unwrapped
    if task.fact_size == 0:
        env.close()
        raise UsageError("env_id", f"{env_id} declares no hidden fact: the probe needs a memory "
                         "task")
    moments = []
    try:
        for seed in seeds:
            run_expert(env, seed)
            moments.append(moments_after_episode(env_id, task, seed))
    finally:
        env.close()
    return moments


def moments_after_episode(env_id: str, task, seed: int) -> EpisodeMoments:
    """The hidden fact and the moments of the episode ``task`` (unwrapped) has just played."""
    cue, decision = task.cue_hidden_at, task.decision_at
    if cue is None or decision is None:
        raise ValueError(f"{env_id} seed {seed}: the expert's episode has no cue_hidden_at "
                         f"({cue}) or decision_at ({decision})")
    pooled = []
    if task.pooled_probe is not None:
        pooled = [(int(step), int(label)) for step, label in task.pooled_probe_rows()]
        if not pooled:
            raise ValueError(f"{env_id} seed {seed}: the expert's episode gave no rows for the "
                             f"pooled probe {task.pooled_probe[0]!r}")
    return EpisodeMoments(int(task.hidden_fact()), {
        "cue_visible": max(0, cue - 1), "cue_hidden": cue,
        "midway": (cue + decision) // 2, "decision": decision}, pooled)


class PretrainedHistory:
    """An AEM pretraining checkpoint seen as a policy's memory: its frozen frames' features and
    the history vector as the recurrent inference computes it, so that pretraining variants can
    be probed before any policy is trained on them."""

    memory_name = "aem"

    def __init__(self, pretrainer):
        self.pretrainer = pretrainer
        self.config = pretrainer.config
        self.memory = None

    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.pretrainer.encoder.encode_frames(rgb)

    @torch.inference_mode()
    def memory_trace(self, features, state, actions) -> torch.Tensor:
        return self.pretrainer.encoder.history(features[None], actions[None])[0]

    def state_dict(self):
        return self.pretrainer.state_dict()


def random_memory_copy(policy, seed: int = 0):
    """The same policy with its memory's weights freshly initialised (normalisation and the
    frame encoder kept)."""
    from aem_bench.policies import VisuomotorPolicy
    from aem_bench.policies.modeling_aem import AEMPretrainer

    torch.manual_seed(seed)
    if isinstance(policy, PretrainedHistory):
        fresh = AEMPretrainer(policy.config, load_encoder_weights=False)
        kept = {key: value for key, value in policy.state_dict().items()
                if key.startswith("encoder.vision.") or "normalizer" in key}
        fresh.load_state_dict(kept, strict=False)
        return PretrainedHistory(fresh.eval())
    fresh = VisuomotorPolicy(policy.config, load_encoder_weights=False)
    trained = policy.state_dict()
    prefix = "memory." if policy.memory is not None else "history."
    kept = {key: value for key, value in trained.items()
            if not key.startswith(prefix) or "normalizer" in key}
    missing = fresh.load_state_dict(kept, strict=False).missing_keys
    if any(not key.startswith(prefix) for key in missing):
        raise RuntimeError(f"random memory: unexpected missing weights {missing}")
    return fresh.eval()


def _probe_accuracy(inputs: np.ndarray, labels: np.ndarray, folds: int, seed: int,
                    groups: np.ndarray | None = None) -> np.ndarray:
    """Per-row correctness of a cross-validated linear probe. Without ``groups`` every row is a
    whole episode; with them (each row's episode) an episode's rows share a fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError("the probe needs episodes with at least two values of the hidden fact")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    if groups is None:
        folds = int(min(folds, counts.min())) if counts.min() >= 2 else 2
        splitter = StratifiedKFold(n_splits=max(2, folds), shuffle=True, random_state=seed)
    else:
        folds = int(min(folds, len(np.unique(groups))))
        splitter = StratifiedGroupKFold(n_splits=max(2, folds), shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, inputs, labels, groups=groups, cv=splitter)
    return predicted == labels


def _probe_entry(rows: dict[str, list], labels: np.ndarray, folds: int, seed: int,
                 groups: np.ndarray | None = None) -> dict:
    """Accuracy and 95% Wilson interval of the probe on each input in ``rows`` (input -> one
    vector per row; an input without rows, the frame stack's random memory, gives None)."""
    entry = {}
    for name in INPUTS:
        key = "probe" if name == "memory" else f"{name}_probe"
        if not rows[name]:
            entry[f"{key}_accuracy"] = None
            continue
        correct = _probe_accuracy(np.stack(rows[name]), labels, folds, seed, groups)
        entry[f"{key}_accuracy"] = float(correct.mean())
        entry[f"{key}_ci95"] = list(wilson_interval(int(correct.sum()), len(correct)))
        if groups is not None:
            entry[f"{key}_accuracy_by_label"] = {
                str(label): float(correct[labels == label].mean())
                for label in np.unique(labels)}
    return entry


def probe(checkpoint: str | os.PathLike, demos_path: str | os.PathLike, folds: int = 5,
          seed: int = 0, progress: bool = True, command: str | None = None) -> dict:
    """Probe the memory of ``checkpoint`` on the episodes of ``demos_path``; the result's top
    level is the decision step, ``moments`` holds every moment."""
    from aem_bench.policies import load_policy
    from aem_bench.policies.modeling_aem import AEMPretrainer
    from aem_bench.policies.training import episode_state
    from aem_bench.progress import progress_bar

    policy = load_policy(checkpoint)
    if isinstance(policy, AEMPretrainer):
        policy = PretrainedHistory(policy)
    memory_name = policy.memory_name
    if memory_name is None:
        raise UsageError("checkpoint", f"{checkpoint}: a {policy.config.policy_type} policy has "
                         "no memory to probe (it reads one frame)")
    demos = load_demos(demos_path)
    if demos.env_id not in TASKS:
        raise InputError(f"{demos_path}: demonstrations of {demos.env_id!r}, not a registered "
                         "task")
    if tuple(demos.episodes[0].rgb.shape[1:3]) != tuple(policy.config.image_size):
        raise InputError(f"{demos_path} has {demos.episodes[0].rgb.shape[1:3]} images, the policy "
                         f"reads {tuple(policy.config.image_size)}")
    moments = episode_moments(demos.env_id, demos.env_kwargs, [ep.seed for ep in demos.episodes])
    pooled_probe = task_class(demos.env_id).pooled_probe
    if len({marks.fact for marks in moments}) < 2:
        raise InputError(f"{demos_path}: every episode has the same hidden fact; the probe needs "
                         "episodes with at least two of its values")
    random_policy = random_memory_copy(policy, seed) if memory_name != "framestack" else None
    swap_rows = SwapRows() if takes_swap_test(policy) else None

    rows = {moment: {name: [] for name in INPUTS} for moment in MOMENTS}
    pooled_rows = {name: [] for name in INPUTS}
    pooled_labels, pooled_episodes, pooled_steps = [], [], []
    for index, (episode, marks) in enumerate(zip(progress_bar(demos.episodes,
                                                              desc="memory traces",
                                                              disable=not progress),
                                                 moments)):
        with torch.inference_mode():
            features = policy.encode(torch.from_numpy(episode.rgb))
        state = torch.from_numpy(episode_state(episode, getattr(policy.config, "state_keys",
                                                                ("qpos",))))
        actions = torch.from_numpy(episode.actions.astype(np.float32))
        traces = {"memory": policy.memory_trace(features, state, actions).numpy(),
                  "frame": torch.cat([features, state], 1).numpy(),
                  "qpos": episode.qpos.astype(np.float32)}
        if random_policy is not None:
            traces["random_memory"] = random_policy.memory_trace(features, state, actions).numpy()
        for moment, step in marks.steps.items():
            step = min(step, len(episode) - 1)
            for name, trace in traces.items():
                rows[moment][name].append(trace[step])
        for step, label in marks.pooled:
            if step >= len(episode):
                raise ValueError(f"{demos_path} episode of seed {episode.seed}: the replay reads "
                                 f"step {step} of a {len(episode)}-step recording")
            for name, trace in traces.items():
                pooled_rows[name].append(trace[step])
            pooled_labels.append(label)
            pooled_episodes.append(index)
            pooled_steps.append(step)
        if swap_rows is not None:  # the rows of the probe at the top level of the result
            memory = torch.from_numpy(traces["memory"])
            for step, label in (marks.pooled if pooled_probe is not None else
                                [(min(marks.steps["decision"], len(episode) - 1), marks.fact)]):
                swap_rows.add(policy, features, state, memory, actions, step, label, index)
    labels = np.array([marks.fact for marks in moments])

    results = [{"step": moment,
                "step_median": float(np.median([m.steps[moment] for m in moments])),
                **_probe_entry(rows[moment], labels, folds, seed)} for moment in MOMENTS]
    top = next(entry for entry in results if entry["step"] == "decision")
    probed = "the hidden fact (hidden_fact()) at the decision step (decision_at)"
    if pooled_probe is not None:
        name, probed = pooled_probe
        pooled_labels, pooled_steps = np.array(pooled_labels), np.array(pooled_steps)
        label_values, label_counts = np.unique(pooled_labels, return_counts=True)
        top = {"step": name, "probed": probed,
               "step_median_by_label": {str(label): float(np.median(
                   pooled_steps[pooled_labels == label])) for label in label_values},
               "rows": len(pooled_labels),
               "commonest_label_rate": float(label_counts.max() / label_counts.sum()),
               **_probe_entry(pooled_rows, pooled_labels, folds, seed,
                              groups=np.array(pooled_episodes))}
        results.append(top)
    if swap_rows is not None:
        top.update(swap_test(policy, swap_rows, seed))
    values, counts = np.unique(labels, return_counts=True)
    return {
        "task": demos.env_id,
        "memory": memory_name,
        "policy_type": getattr(policy.config, "policy_type", "aem-pretrain"),
        "checkpoint": str(checkpoint),
        "probed": probed,
        **top,
        "moments": results,
        "episodes": len(labels),
        "fact_values": len(values),
        "majority_rate": float(counts.max() / counts.sum()),
        "probe": "logistic regression on standardised inputs, stratified "
                 f"{folds}-fold cross-validation over whole episodes"
                 + (" (the pooled probe: stratified group k-fold, each episode's rows in one "
                    "fold)" if pooled_probe else ""),
        "demos": str(demos_path),
        "git_commit": git_commit(),
        "command": command or command_line(),
    }


def write_probe(result: dict, directory: str | os.PathLike = PROBE_DIR) -> Path:
    """``DIRECTORY/TASK_CHECKPOINT.json``, one file per (task, checkpoint)."""
    name = f"{result['task'].split('/')[-1]}_{Path(result['checkpoint']).name}.json"
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def probe_table(result: dict) -> str:
    from tabulate import tabulate

    def cell(entry, key):
        value = entry.get(f"{key}_accuracy")
        if value is None:
            return "-"
        lo, hi = entry[f"{key}_ci95"]
        return f"{100 * value:.0f}% ({100 * lo:.0f}-{100 * hi:.0f})"

    def steps(entry):
        if "step_median" in entry:
            return f"{entry['step_median']:.0f}"
        return "/".join(f"{step:.0f}" for step in entry["step_median_by_label"].values())

    rows = [[entry["step"], steps(entry), cell(entry, "probe"), cell(entry, "frame_probe"),
             cell(entry, "qpos_probe"), cell(entry, "random_memory_probe")]
            for entry in result["moments"]]
    table = tabulate(rows, headers=["moment", "step (median)", f"{result['memory']} memory",
                                    "frame + qpos", "qpos", "random memory"])
    if result.get("memory_use_rate") is None:
        return table
    low, high = result["memory_use_ci95"]
    fact_low, fact_high = result["fact_use_ci95"]
    return (f"{table}\n\nmemory-swap test at the {result['step']} rows "
            f"({result['memory_use_rows']}), the head's actions closer to the expert's with its own "
            f"memory than with another fact's: {100 * result['memory_use_rate']:.0f}% "
            f"({100 * low:.0f}-{100 * high:.0f}); with another episode's memory of the same fact "
            f"than with another fact's: {100 * result['fact_use_rate']:.0f}% "
            f"({100 * fact_low:.0f}-{100 * fact_high:.0f}). 50%: the head does not act on its "
            f"memory, or not on the fact in it")
