"""Evaluating a saved policy checkpoint on a task, as `aem-bench eval` and `aem-bench sweep` do.

The checkpoint decides how the task is made (an oracle policy gets the task in oracle mode, the
camera is the one it was trained with), and the report says what the policy observed and how it
was trained (its recipe), so that a results file describes its policy by facts, not by a name.

It sits above the evaluator, which knows nothing of the policy zoo: what needs the zoo to name or
load a policy lives here, and the evaluator gets it as arguments.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from aem_bench.evaluator import EvalReport, evaluate


def load_for_eval(checkpoint: str | os.PathLike, threads: int):
    """A checkpoint's policy with torch at ``threads`` threads (also run in eval workers)."""
    import torch

    from aem_bench.policies import load_policy

    # One thread by default: the CPU renderer runs threads of its own, and torch's OpenMP workers
    # spin-wait at every barrier; on 2 cores, 2 torch threads stalled some calls 100-fold.
    torch.set_num_threads(threads)
    return load_policy(checkpoint)


def env_kwargs_for(config) -> dict:
    """How to make a task for a policy of this config: oracle mode for a policy that reads the
    oracle or the fact (the memory tasks' controls), and the camera it was trained with."""
    reads_control = bool({"oracle", "fact"} & set(config.state_keys))
    env_kwargs = {"obs_mode": "rgb+oracle"} if reads_control else {}
    if tuple(config.image_size) != (128, 128):
        env_kwargs["camera_size"] = tuple(config.image_size)
    return env_kwargs


def zoo_parts(policy) -> dict:
    """``encoder``/``head`` keyword arguments of :func:`aem_bench.evaluator.evaluate` naming a zoo
    policy's parts as results files do (:func:`aem_bench.policies.leaderboard_parts`); empty for
    any other policy, which the report then calls "custom"."""
    config = getattr(policy, "config", None)
    if not hasattr(config, "policy_type"):
        return {}
    from aem_bench.policies import leaderboard_parts

    return dict(zip(("encoder", "head"), leaderboard_parts(config), strict=True))


def evaluate_checkpoint(checkpoint: str | os.PathLike, task: str, episodes: int, seed: int,
                        name: str | None = None, threads: int = 1, workers: int = 1,
                        policy=None, **evaluate_kwargs) -> EvalReport:
    """Evaluate the policy saved in ``checkpoint`` on ``task`` (``episodes`` expert-solvable
    seeds from ``seed`` on); ``policy``: the checkpoint already loaded, else it is loaded here.
    ``evaluate_kwargs`` go to :func:`aem_bench.evaluator.evaluate` (log, video, backend...)."""
    from aem_bench.policies.training import checkpoint_training

    policy = policy if policy is not None else load_for_eval(checkpoint, threads)
    config, memory = policy.config, policy.memory_name
    parts = zoo_parts(policy)
    name = name or f"{config.policy_type} ({Path(checkpoint).name})"
    training = checkpoint_training(checkpoint, config, memory)  # a damaged recipe: before any work
    if workers > 1 or evaluate_kwargs.get("backend", "local") == "ray":
        policy = functools.partial(load_for_eval, checkpoint, threads)  # one copy per worker
    report = evaluate(policy, task, episodes, seed=seed, policy_name=name,
                      env_kwargs=env_kwargs_for(config), workers=workers,
                      checkpoint=checkpoint, **parts, **evaluate_kwargs)
    report.observations = ["rgb", *config.state_keys]
    report.training = training
    return report
