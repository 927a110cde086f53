"""Run evaluation episodes on Ray actors, on this machine or on a Ray cluster.

Why Ray next to the evaluator's process pool: a cluster spreads one evaluation over several
machines, and Ray reports a dead worker (a segfault in the simulator, the OOM killer, a lost node)
as an error on the episode it was running instead of hanging. Each actor builds its policy from
the picklable factory and its environment once, then runs one seed at a time, so a slow episode
never holds back the queue; records come back in the order they finish.

Only :func:`ray_episodes` is meant to be used, through ``evaluate(..., backend="ray")``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium as gym
import ray
from ray.exceptions import RayError, RayTaskError

from aem_bench.evaluator import EpisodeRecord, EvaluationError, run_episode


class EpisodeRunner:
    """The state of one Ray worker: a policy and an environment, made once."""

    def __init__(self, make_policy: Callable, env_id: str, env_kwargs: dict):
        self.policy = make_policy()
        self.env = gym.make(env_id, **env_kwargs)

    def run(self, seed: int, video: str | None) -> EpisodeRecord:
        return run_episode(self.env, self.policy, seed, video)


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address``, or start a local instance when there is none.

    An instance this process already joined (``ray.init`` called by the caller) is used as is.
    A local instance started here lives until the process exits, so that evaluating several
    tasks in a row does not pay Ray's start-up each time; a cluster is never shut down from here.
    """
    if not ray.is_initialized():
        ray.init(address=address)


def ray_episodes(make_policy: Callable, env_id: str, env_kwargs: dict, seeds: list[int],
                 workers: int, videos: dict[int, Path],
                 address: str | None = None) -> Iterator[EpisodeRecord]:
    """EpisodeRecords of ``seeds`` as they finish, from ``workers`` Ray actors (one CPU each).

    Videos are written by the actor, so on a cluster their paths are on the actor's node. A policy
    that raises or an actor that dies raises :class:`EvaluationError` naming the seed; the
    records yielded before stay valid.
    """
    if not seeds:
        return
    connect(address)
    # max_restarts=0: a restarted actor would rerun nothing by itself, and a crash must surface.
    runner_class = ray.remote(num_cpus=1, max_restarts=0)(EpisodeRunner)
    runners = [runner_class.remote(make_policy, env_id, env_kwargs)
               for _ in range(min(workers, len(seeds)))]
    queue = iter(seeds)
    running = {}  # ObjectRef of a run -> (the actor running it, its seed)

    def submit(runner) -> None:
        seed = next(queue, None)
        if seed is not None:
            video = videos.get(seed)
            running[runner.run.remote(seed, None if video is None else str(video))] = (runner,
                                                                                      seed)

    try:
        for runner in runners:
            submit(runner)
        while running:
            [ready], _ = ray.wait(list(running), num_returns=1)
            runner, seed = running.pop(ready)
            record = _result(ready, seed)
            submit(runner)  # before yielding: the actor works while the caller logs
            yield record
    finally:
        # On an error or an abandoned generator, stop the queued episodes now: keep what is done.
        for runner in runners:
            ray.kill(runner)


def _result(ref, seed: int) -> EpisodeRecord:
    try:
        return ray.get(ref)
    except RayTaskError as err:
        if isinstance(err.cause, EvaluationError):  # the policy raised: run_episode's message
            raise EvaluationError(str(err.cause)) from err.cause.__cause__
        raise EvaluationError(f"seed {seed}: the Ray worker raised {err.cause!r}") from err.cause
    except RayError as err:
        raise EvaluationError(
            f"the Ray worker running seed {seed} died (killed, out of memory, crashed in native "
            f"code, its node lost, or its policy or environment failed to build): "
            f"{type(err).__name__}: {_first_line(err)}") from err


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""
