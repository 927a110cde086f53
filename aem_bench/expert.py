"""Running a task's scripted expert: success rates and demonstrations."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

import aem_bench  # noqa: F401  (registers the tasks)
from aem_bench.demos import DemoWriter, Episode
from aem_bench.errors import EvaluationError
from aem_bench.sim.motion import ExpertFailure


class ExpertShortfall(EvaluationError, ValueError):
    """The expert solved fewer seeds than were asked for: neither bad input nor a bug, so the
    command line says so in one line (exit code 1). A ValueError too: a count of seeds the
    expert cannot supply is a request it refuses."""


@dataclass
class ExpertResult:
    seed: int
    success: bool
    steps: int
    episode: Episode | None  # the recorded observations and actions, when asked for
    failure: str | None = None  # why the expert gave up (IK out of reach), if it did


def run_expert(env: gym.Env, seed: int, record: bool = False,
               on_step: Callable[[np.ndarray], None] | None = None) -> ExpertResult:
    """Play one episode with the expert. ``env`` comes from ``gym.make`` (TimeLimit applies).

    ``on_step(action)`` is called before each step, with the environment still in the state the
    action was chosen in (for what state mode does not record: the actions, the joint state)."""
    obs, info = env.reset(seed=seed)
    rgb, qpos, oracle, fact, actions = [], [], [], [], []
    failure = None
    try:
        for action in env.unwrapped.expert():
            if on_step is not None:
                on_step(action)
            if record:
                rgb.append(obs["rgb"])
                qpos.append(obs["qpos"])
                if "oracle" in obs:
                    oracle.append(obs["oracle"])
                    fact.append(obs["fact"])
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
        episode = Episode(np.stack(rgb), np.stack(qpos), np.stack(actions), seed, success,
                          oracle=np.stack(oracle) if oracle else None,
                          fact=np.stack(fact) if fact else None)
    return ExpertResult(seed, success, steps, episode, failure)


def run_expert_frames(env_id: str, seed: int, size: int = 256) -> list[np.ndarray]:
    """The head camera's frames of one expert episode, for videos."""
    env = gym.make(env_id, camera_size=(size, size))
    try:
        obs, _ = env.reset(seed=seed)
        frames = [obs["rgb"]]
        try:
            for action in env.unwrapped.expert():
                obs, _, terminated, truncated, _ = env.step(action)
                frames.append(obs["rgb"])
                if terminated or truncated:
                    break
        except ExpertFailure:
            pass  # the frames up to the failure are still worth seeing
    finally:
        env.close()
    return frames


def expert_rollouts(env_id: str, seeds: Iterable[int], record: bool = False,
                    **env_kwargs) -> Iterator[ExpertResult]:
    env = gym.make(env_id, **env_kwargs)
    try:
        for seed in seeds:
            yield run_expert(env, seed, record=record)
    finally:
        env.close()


def expert_summary(env_id: str, results: list[ExpertResult]) -> dict:
    """The expert's success rate, failed seeds and mean episode length over ``results``."""
    successes = sum(r.success for r in results)
    return {
        "task": env_id,
        "episodes": len(results),
        "successes": successes,
        "success_rate": successes / len(results),
        "failed_seeds": [r.seed for r in results if not r.success],
        "mean_steps": sum(r.steps for r in results) / len(results),
    }


def record_demos(env_id: str, episodes: int, out: str | os.PathLike, seed: int = 0,
                 progress: bool = True, **env_kwargs) -> int:
    """Record the expert's first ``episodes`` successful episodes from ``seed`` on to ``out``
    (HDF5), trying at most ``2 * episodes + 10`` seeds; return how many seeds were tried.

    The file is written under another name and renamed at the end, so an interrupted or short
    recording never stands in for a complete one; a short one raises ``ValueError`` and leaves
    nothing at ``out``."""
    from aem_bench.progress import progress_bar

    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    seeds = range(seed, seed + 2 * episodes + 10)
    written = tried = 0
    try:
        with DemoWriter(partial, env_id, env_kwargs) as writer, \
                progress_bar(total=episodes, desc=f"demos {env_id}", unit="ep",
                             disable=not progress) as bar:
            for result in expert_rollouts(env_id, seeds, record=True, **env_kwargs):
                tried += 1
                if result.success:
                    writer.add(result.episode)
                    written += 1
                    bar.update(1)
                if written == episodes:
                    break
        if written < episodes:
            raise ExpertShortfall(f"the expert of {env_id} solved only {written} of seeds "
                                  f"{seeds.start}-{seeds.stop - 1}, not the {episodes} asked for")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return tried


# Settings that change what a policy sees, or how long it may try, but not whether the layout
# can be solved: the solvability check runs the expert under the task's own settings instead.
_NOT_LAYOUT_KWARGS = ("obs_mode", "camera_size", "wrist_cameras", "render_mode",
                      "max_episode_steps")


def solvable_seeds(env_id: str, count: int, start: int = 0, **env_kwargs) -> list[int]:
    """The first ``count`` seeds from ``start`` on which the expert succeeds.

    RoboTwin 2.0 evaluates only on seeds its expert solves, so that a failure is the policy's,
    not an impossible layout's. The check runs without rendering (physics does not depend on
    it), about 0.25 s per seed.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    kwargs = {k: v for k, v in env_kwargs.items() if k not in _NOT_LAYOUT_KWARGS}
    seeds: list[int] = []
    max_tries = 2 * count + 20
    with_state = gym.make(env_id, obs_mode="state", **kwargs)
    try:
        for seed in range(start, start + max_tries):
            if run_expert(with_state, seed).success:
                seeds.append(seed)
                if len(seeds) == count:
                    return seeds
    finally:
        with_state.close()
    raise ExpertShortfall(f"the expert of {env_id} solved only {len(seeds)} of seeds "
                          f"{start}-{start + max_tries - 1}; it cannot supply {count} solvable "
                          "seeds")


def replay_actions(env: gym.Env, seed: int, actions: list[np.ndarray]) -> bool:
    """Play ``actions`` open-loop on ``seed``; whether the episode ends in success."""
    _, info = env.reset(seed=seed)
    for action in actions:
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return bool(info["is_success"])


def blind_replay_rate(env_id: str, pairs: int = 20, first_seed: int = 0,
                      replay_seed: int = 1000, **env_kwargs) -> dict:
    """How often the expert's actions of one layout, replayed blind on another, succeed.

    The expert's actions are recorded on the first ``pairs`` seeds from ``first_seed`` on that it
    solves, and the i-th is replayed open-loop on seed ``replay_seed + i`` (state mode). A task
    whose layout varies enough to need vision scores near 0; a high rate says a fixed motion
    solves most layouts, so a policy can succeed without looking."""
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    if first_seed < 0 or replay_seed < 0:
        raise ValueError(f"seeds must be at least 0, got {first_seed} and {replay_seed}")
    max_tries = 2 * pairs + 20
    sources = range(first_seed, first_seed + max_tries)
    targets = range(replay_seed, replay_seed + pairs)
    if sources.start < targets.stop and targets.start < sources.stop:
        # A layout replayed on itself is the expert's own success, not a blind one.
        raise ValueError(f"replay seeds {targets.start}-{targets.stop - 1} overlap the seeds "
                         f"the actions may come from, {sources.start}-{sources.stop - 1}")
    kwargs = {k: v for k, v in env_kwargs.items() if k not in _NOT_LAYOUT_KWARGS}
    env = gym.make(env_id, obs_mode="state", **kwargs)
    recorded: list[tuple[int, list[np.ndarray]]] = []
    try:
        for seed in sources:
            actions: list[np.ndarray] = []
            if run_expert(env, seed, on_step=lambda a, into=actions: into.append(np.array(a))).success:
                recorded.append((seed, actions))
                if len(recorded) == pairs:
                    break
        if len(recorded) < pairs:
            raise ExpertShortfall(f"the expert of {env_id} solved only {len(recorded)} of "
                                  f"seeds {sources.start}-{sources.stop - 1}, not the {pairs} "
                                  "asked for")
        outcomes = [replay_actions(env, target, actions)
                    for target, (_, actions) in zip(targets, recorded)]
    finally:
        env.close()
    from aem_bench.stats import wilson_interval

    successes = sum(outcomes)
    return {
        "pairs": pairs,
        "successes": successes,
        "rate": successes / pairs,
        "ci95": list(wilson_interval(successes, pairs)),
        "source_seeds": [seed for seed, _ in recorded],
        "replay_seeds": list(targets),
    }
