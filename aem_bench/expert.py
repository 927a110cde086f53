"""Running a task's scripted expert: success rates and demonstrations."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

import aem_bench  # noqa: F401  (registers the tasks)
from aem_bench.demos import Episode
from aem_bench.sim.motion import ExpertFailure


@dataclass
class ExpertResult:
    seed: int
    success: bool
    steps: int
    episode: Episode | None  # the recorded observations and actions, when asked for
    failure: str | None = None  # why the expert gave up (IK out of reach), if it did


def run_expert(env: gym.Env, seed: int, record: bool = False) -> ExpertResult:
    """Play one episode with the expert. ``env`` comes from ``gym.make`` (TimeLimit applies)."""
    obs, info = env.reset(seed=seed)
    rgb, qpos, actions = [], [], []
    failure = None
    try:
        for action in env.unwrapped.expert():
            if record:
                rgb.append(obs["rgb"])
                qpos.append(obs["qpos"])
                actions.append(action)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
    except ExpertFailure as err:
        failure = str(err)
    success = bool(info["is_success"])
    steps = int(env.unwrapped.elapsed_steps)
    episode = None
    if record and actions:
        episode = Episode(np.stack(rgb), np.stack(qpos), np.stack(actions), seed, success)
    return ExpertResult(seed, success, steps, episode, failure)


def expert_rollouts(env_id: str, seeds: Iterable[int], record: bool = False,
                    **env_kwargs) -> Iterator[ExpertResult]:
    env = gym.make(env_id, **env_kwargs)
    try:
        for seed in seeds:
            yield run_expert(env, seed, record=record)
    finally:
        env.close()
