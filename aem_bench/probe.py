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

Moments, per episode, from a state-mode replay of the episode's seed (the task records them):
``cue_visible`` (the last step the cue is in the frame: there the frame probe says whether the
frame features show the fact at all), ``cue_hidden`` (the step the cue leaves the frame),
``decision`` (the first step at which the fact decides the expert's action, the task's
``decision_at``) and ``midway`` between them. The decision
step is the one that matters: a memory that holds the fact there can be acted on. A probe that
reads the fact from the memory but a policy that still fails says "held but unused"; a probe at
chance says "not in the memory".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from aem_bench.demos import load_demos
from aem_bench.errors import InputError, UsageError
from aem_bench.expert import run_expert
from aem_bench.provenance import command_line, git_commit
from aem_bench.registration import TASKS
from aem_bench.stats import wilson_interval

PROBE_DIR = Path("leaderboard/probes")
MOMENTS = ("cue_visible", "cue_hidden", "midway", "decision")
INPUTS = ("memory", "frame", "qpos", "random_memory")


@dataclass
class EpisodeMoments:
    fact: int
    steps: dict[str, int]  # moment -> step


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
    return EpisodeMoments(int(task.hidden_fact()), {
        "cue_visible": max(0, cue - 1), "cue_hidden": cue,
        "midway": (cue + decision) // 2, "decision": decision})


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


def _probe_accuracy(inputs: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Per-row correctness of a cross-validated linear probe (rows are whole episodes)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError("the probe needs episodes with at least two values of the hidden fact")
    folds = int(min(folds, counts.min())) if counts.min() >= 2 else 2
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    splitter = StratifiedKFold(n_splits=max(2, folds), shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, inputs, labels, cv=splitter)
    return predicted == labels


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
    if len({marks.fact for marks in moments}) < 2:
        raise InputError(f"{demos_path}: every episode has the same hidden fact; the probe needs "
                         "episodes with at least two of its values")
    random_policy = random_memory_copy(policy, seed) if memory_name != "framestack" else None

    rows = {moment: {name: [] for name in INPUTS} for moment in MOMENTS}
    for episode, marks in zip(progress_bar(demos.episodes, desc="memory traces",
                                           disable=not progress),
                              moments):
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
    labels = np.array([marks.fact for marks in moments])

    results = []
    for moment in MOMENTS:
        entry = {"step": moment,
                 "step_median": float(np.median([m.steps[moment] for m in moments]))}
        for name in INPUTS:
            if not rows[moment][name]:
                entry[f"{name}_probe_accuracy"] = None
                continue
            correct = _probe_accuracy(np.stack(rows[moment][name]), labels, folds, seed)
            key = "probe" if name == "memory" else f"{name}_probe"
            entry[f"{key}_accuracy"] = float(correct.mean())
            entry[f"{key}_ci95"] = list(wilson_interval(int(correct.sum()), len(correct)))
        results.append(entry)
    values, counts = np.unique(labels, return_counts=True)
    decision = next(entry for entry in results if entry["step"] == "decision")
    return {
        "task": demos.env_id,
        "memory": memory_name,
        "policy_type": getattr(policy.config, "policy_type", "aem-pretrain"),
        "checkpoint": str(checkpoint),
        **decision,
        "moments": results,
        "episodes": len(labels),
        "fact_values": len(values),
        "majority_rate": float(counts.max() / counts.sum()),
        "probe": "logistic regression on standardised inputs, stratified "
                 f"{folds}-fold cross-validation over whole episodes",
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

    rows = [[entry["step"], f"{entry['step_median']:.0f}", cell(entry, "probe"),
             cell(entry, "frame_probe"), cell(entry, "qpos_probe"),
             cell(entry, "random_memory_probe")] for entry in result["moments"]]
    return tabulate(rows, headers=["moment", "step (median)", f"{result['memory']} memory",
                                   "frame + qpos", "qpos", "random memory"])
