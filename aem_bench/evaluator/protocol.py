"""The evaluation protocol: which seeds, resuming from the log, and the report at the end.

What lives here: :func:`evaluate`, which checks its arguments, picks the seeds (the first
``episodes`` seeds from ``seed`` on that the scripted expert solves, RoboTwin 2.0's protocol), the
videos to write and the backend, resumes from the episode log, shows progress, and assembles the
:class:`EvalReport`. It imports the rest of the package, ``aem_bench.registration`` and
``aem_bench.expert`` (the task list and its expert, for the seeds) and ``aem_bench.progress``. It
never imports the policy zoo: a zoo policy's encoder and head come in as ``encoder``/``head``
from the caller (``aem_bench.checkpoint_eval``, ``aem_bench.testing``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Collection
from pathlib import Path

from aem_bench.errors import UsageError
from aem_bench.evaluator.backends import check_backend_choice, make_backend
from aem_bench.evaluator.episode import EvaluationError, Policy
from aem_bench.evaluator.log import EpisodeLog, checkpoint_digest
from aem_bench.evaluator.report import EvalReport
from aem_bench.expert import solvable_seeds
from aem_bench.progress import progress_bar
from aem_bench.registration import TASKS
from aem_bench.seeds import EVAL_SEED_START


def evaluate(
    policy: Policy | Callable[[], Policy],
    env_id: str,
    episodes: int,
    seed: int = EVAL_SEED_START,
    env_kwargs: dict | None = None,
    progress: bool = True,
    policy_name: str | None = None,
    solvable_only: bool = True,
    workers: int = 1,
    log: str | os.PathLike | None = None,
    video_dir: str | os.PathLike | None = None,
    video_episodes: int | Collection[int] = 1,
    video_format: str = "gif",
    encoder: str | None = None,
    head: str | None = None,
    backend: str = "local",
    address: str | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> EvalReport:
    """Run ``episodes`` episodes on expert-solvable seeds from ``seed`` on and report on them
    (``solvable_only=False``, or an environment from outside the suite: ``seed, seed + 1, ...``).

    ``policy`` is a policy, or a picklable function that makes one (needed for ``workers > 1``:
    each worker process makes its own). Episodes are independent (the policy and the environment
    are reset with the episode's seed), so any number of workers gives the same records.
    ``log``: a JSONL file that gets each episode as it ends; run again with the same log, only the
    missing episodes run. ``video_dir``: write videos there of the first ``video_episodes``
    episodes, or of the episodes with these seeds. ``encoder``/``head`` name the policy's parts in
    the report (default "custom"; ``aem_bench.checkpoint_eval.zoo_parts`` gives a zoo policy's).
    ``backend="ray"`` runs the episodes on ``workers`` Ray actors (``policy`` must be a factory):
    on the cluster at ``address``, on the instance this process already joined, or on a local
    instance started for it; the records are the same as a local run's. ``checkpoint``: the
    policy's checkpoint directory, whose digest the log records, so that the log is resumed only
    by an evaluation of the very same weights.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    check_backend_choice(backend, address)
    is_factory = callable(policy) and not hasattr(policy, "act")
    if workers > 1 and not is_factory:
        raise ValueError("workers > 1 needs a function that makes the policy, not a policy")
    if backend == "ray" and not is_factory:
        raise ValueError("backend='ray' needs a function that makes the policy, not a policy")
    runner = make_backend(backend, workers, address)
    env_kwargs = dict(env_kwargs or {})
    task = TASKS.get(env_id)  # None for environments from outside the suite: no expert
    scene = env_kwargs.get("scene", task.scene if task else "clean")
    seeds = (solvable_seeds(env_id, episodes, seed, **env_kwargs) if solvable_only and task
             else list(range(seed, seed + episodes)))
    name = policy_name or (getattr(policy, "__name__", None) if is_factory
                           else type(policy).__name__) or "policy"
    videos = _video_paths(env_id, seeds, video_dir, video_episodes, video_format)
    header = {"task": env_id, "env_kwargs": env_kwargs, "policy": name, "seeds": seeds}
    if checkpoint is not None:
        header["checkpoint_digest"] = checkpoint_digest(checkpoint)
    episode_log = EpisodeLog(log, header) if log is not None else None
    done = dict(episode_log.done) if episode_log else {}
    if done:
        print(f"resuming {len(done)} episodes from {episode_log.path}", file=sys.stderr)
    todo = [s for s in seeds if s not in done]
    run_policy = policy() if is_factory and runner.in_process else policy
    with progress_bar(total=episodes, initial=len(done), desc=env_id, unit="ep",
                      disable=not progress) as bar:
        try:
            for record in runner.episodes(run_policy, env_id, env_kwargs, todo, videos):
                done[record.seed] = record
                if episode_log:
                    episode_log.append(record)
                successes = sum(r.success for r in done.values())
                bar.set_postfix(success=f"{successes}/{len(done)} ({successes / len(done):.0%})",
                                refresh=False)
                bar.update()
        except EvaluationError as err:
            kept = (f"they are in {episode_log.path}; run again with it to resume" if episode_log
                    else "pass a log to keep them next time")
            raise EvaluationError(f"{env_id}: {err}. {len(done)} of {episodes} episodes had "
                                  f"finished: {kept}") from err.__cause__
    return EvalReport(policy=name, task=env_id, records=[done[s] for s in seeds],
                      env_kwargs=env_kwargs, variant=scene,
                      encoder=encoder or "custom", head=head or "custom", workers=workers)


def _video_paths(env_id: str, seeds: list[int], video_dir, which: int | Collection[int],
                 video_format: str) -> dict[int, Path]:
    """seed -> video file, for the first ``which`` seeds or the seeds in ``which``."""
    if video_dir is None:
        return {}
    if video_format not in ("gif", "mp4"):
        raise ValueError(f"video_format must be 'gif' or 'mp4', got {video_format!r}")
    if isinstance(which, int):
        chosen = seeds[:which]
    else:
        chosen = list(which)
        if unknown := sorted(set(chosen) - set(seeds)):
            raise UsageError("video_episodes", f"video seeds {unknown} are not among this "
                             f"evaluation's seeds ({seeds[0]}...{seeds[-1]})")
    stem = env_id.replace("/", "_")
    return {seed: Path(video_dir) / f"{stem}_seed{seed}.{video_format}" for seed in chosen}
