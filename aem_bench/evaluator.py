"""Evaluate a policy on an AEM task: success rate with a Wilson interval, policy latency, provenance.

Usage::

    report = evaluate(policy, "AEM/HandoverBlock-v0", episodes=100)
    write_report(report, "leaderboard/results/my_policy.json")

Episodes run on the first ``episodes`` seeds from ``seed`` that the scripted expert solves (RoboTwin
2.0's protocol), the same seed for the environment and the policy, so two policies evaluated with
the same ``seed`` and ``episodes`` face exactly the same initial states. The JSON that
:func:`write_report` writes is a valid leaderboard results file (see ``aem_bench.leaderboard.results``).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Collection
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import gymnasium as gym
import numpy as np

from aem_bench.demos import package_versions
from aem_bench.expert import solvable_seeds
from aem_bench.progress import progress_bar
from aem_bench.provenance import git_commit
from aem_bench.registration import TASKS
from aem_bench.seeds import EVAL_SEED_START
from aem_bench.stats import wilson_interval


class Policy(Protocol):
    """What the evaluator needs from a policy.

    Optional: a ``last_encoder_ms`` attribute, the milliseconds the last ``act`` spent encoding
    observations (vision and history, not the action head), or None when that call encoded
    nothing (it executed an action planned before). The evaluator reports it as encoder latency.
    """

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observation: dict) -> np.ndarray: ...


class EvaluationError(RuntimeError):
    """An evaluation stopped before its last episode (the policy raised, a worker died). The
    episodes finished before are in the episode log, and rerunning resumes after them."""


def _latency_summary(latencies_ms: list[float]) -> dict:
    if not latencies_ms:
        return {"median": None, "p95": None}
    return {
        "median": round(float(np.median(latencies_ms)), 4),
        "p95": round(float(np.percentile(latencies_ms, 95)), 4),
    }


ENVIRONMENT_CRASHED = "environment crashed"


@dataclass
class EpisodeRecord:
    seed: int
    success: bool
    steps: int  # environment steps completed
    # Wall time of the steps (policy + environment). Reset is left out: the first one in a process
    # initialises the renderer and takes seconds, which would swamp steps_per_second.
    seconds: float
    latencies_ms: list[float] = field(repr=False)  # one per policy.act call
    # Set when the episode ended abnormally: the policy's action was invalid (NaN, wrong shape), or
    # the environment crashed (the message then contains ENVIRONMENT_CRASHED). Either way the
    # episode counts as a failure in the report; errors are counted apart in its summary.
    error: str | None = None
    encoder_ms: list[float] = field(default_factory=list, repr=False)  # see Policy
    reset_seconds: float = 0.0
    peak_rss_mb: float | None = None  # of the process, at the end of the episode
    video: str | None = None

    @property
    def environment_crashed(self) -> bool:
        """The environment, not the policy, ended this episode: its outcome is unknown."""
        return self.error is not None and ENVIRONMENT_CRASHED in self.error

    def to_log(self) -> dict:
        """Everything, latencies included: a line of the episode log, from which a resumed run
        rebuilds the report exactly."""
        return {"seed": self.seed, "success": self.success, "steps": self.steps,
                "seconds": self.seconds, "latencies_ms": self.latencies_ms, "error": self.error,
                "encoder_ms": self.encoder_ms, "reset_seconds": self.reset_seconds,
                "peak_rss_mb": self.peak_rss_mb, "video": self.video}

    def to_dict(self) -> dict:
        # Per-episode summaries keep results files small; the report aggregates the raw latencies.
        return {
            "seed": self.seed,
            "success": self.success,
            "steps": self.steps,
            "seconds": round(self.seconds, 4),
            "latency_ms": _latency_summary(self.latencies_ms),
            "error": self.error,
            "video": self.video,
        }


def collect_provenance() -> dict:
    """Where and with what the numbers were produced."""
    return {
        "hardware": _hardware(),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _hardware() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: keep the platform module's answer
    try:  # torch's thread count decides how fast a CPU policy answers
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    return {"cpu": cpu, "cores": os.cpu_count() or 0, "torch_threads": torch_threads}


@dataclass
class EvalReport:
    policy: str
    task: str
    records: list[EpisodeRecord]
    env_kwargs: dict = field(default_factory=dict)
    variant: str = "clean"
    encoder: str = "custom"  # a zoo policy's encoder and head; "custom" for any other policy
    head: str = "custom"
    workers: int = 1
    provenance: dict = field(default_factory=collect_provenance)
    # What the policy reads ("rgb", "qpos", "oracle"): an oracle policy is a fact, not a name.
    observations: list[str] | None = None
    # How the checkpoint was made (its recipe.json and the checkpoints it builds on), if known.
    training: dict | None = None

    @property
    def successes(self) -> int:
        return sum(record.success for record in self.records)

    def summary(self) -> dict:
        episodes = len(self.records)
        steps = sum(record.steps for record in self.records)
        seconds = sum(record.seconds for record in self.records)
        lo, hi = wilson_interval(self.successes, episodes)
        # One process's throughput, resets included: a run with W workers does about W times it.
        episode_seconds = seconds + sum(record.reset_seconds for record in self.records)
        peaks = [record.peak_rss_mb for record in self.records if record.peak_rss_mb is not None]
        return {
            "policy": self.policy,
            "encoder": self.encoder,
            "head": self.head,
            "task": self.task,
            "variant": self.variant,
            "episodes": episodes,
            "successes": self.successes,
            "success_rate": self.successes / episodes,
            "success_ci95": [lo, hi],
            "latency_ms": _latency_summary(
                [ms for record in self.records for ms in record.latencies_ms]
            ),
            "encoder_latency_ms": _latency_summary(
                [ms for record in self.records for ms in record.encoder_ms]
            ),
            "peak_rss_mb": round(max(peaks), 1) if peaks else None,
            "episodes_per_hour": (round(3600 * episodes / episode_seconds, 1)
                                  if episode_seconds > 0 else None),
            "workers": self.workers,
            "steps_per_second": round(steps / seconds, 2) if seconds > 0 else None,
            "errors": sum(record.error is not None for record in self.records),
            "seeds": [record.seed for record in self.records],
            "observations": self.observations,
            "training": self.training,
            **self.provenance,
        }

    def to_dict(self) -> dict:
        """The summary plus what is needed to rerun it and per-episode detail: the JSON content."""
        return {
            **self.summary(),
            "env_kwargs": self.env_kwargs,
            "records": [record.to_dict() for record in self.records],
        }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def invalid_action(action, space: gym.Space) -> str | None:
    """Why ``action`` is not one the policy may send in ``space`` (None if it is): for a Box, not
    numbers, the wrong shape, or NaN/inf (values out of bounds are the environment's to clip).

    Checked here rather than read off the environment's exception, so that an error the
    environment raises on a valid action (a ValueError from a bug in the simulator) is booked as
    the environment's crash, not as the policy's bad action."""
    if not isinstance(space, gym.spaces.Box):
        return None if space.contains(action) else f"{action!r} is not in {space}"
    array = np.asarray(action)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        return f"action must be numbers, got dtype {array.dtype}"
    if array.shape != space.shape:
        return f"action must have shape {space.shape}, got {array.shape}"
    if not np.all(np.isfinite(array)):
        return (f"action must be finite; NaN or inf at indices "
                f"{np.flatnonzero(~np.isfinite(array)).tolist()}")
    return None


def run_episode(env: gym.Env, policy: Policy, seed: int,
                video: str | os.PathLike | None = None) -> EpisodeRecord:
    """Run one episode to termination or truncation (and write its frames to ``video``).

    An invalid action (:func:`invalid_action`: NaN, wrong shape) or any exception inside the
    environment ends the episode as a failure with ``error`` set, "action rejected" or
    "environment crashed": one broken episode must not cost the others. An exception from the
    policy is a bug in the policy and stops the evaluation.
    """
    tic = time.perf_counter()
    policy.reset(seed=seed)
    try:
        observation, _ = env.reset(seed=seed)
    except Exception as err:  # noqa: BLE001 - a crashed simulator is this episode's failure
        return EpisodeRecord(seed, False, 0, 0.0, [], f"reset: {ENVIRONMENT_CRASHED}: {err!r}")
    reset_seconds = time.perf_counter() - tic
    start = time.perf_counter()
    latencies_ms: list[float] = []
    encoder_ms: list[float] = []
    frames = [observation["rgb"]] if video is not None else None
    steps, success, error = 0, False, None
    while True:
        tic = time.perf_counter()
        try:
            action = policy.act(observation)
        except Exception as err:
            raise EvaluationError(f"seed {seed}, step {steps}: the policy raised {err!r}") from err
        latencies_ms.append((time.perf_counter() - tic) * 1e3)
        if (encoded := getattr(policy, "last_encoder_ms", None)) is not None:
            encoder_ms.append(encoded)
        if (invalid := invalid_action(action, env.action_space)) is not None:
            error = f"step {steps}: action rejected: {invalid}"
            break
        try:
            observation, _, terminated, truncated, info = env.step(action)
        except Exception as err:  # noqa: BLE001 - a crashed simulator is this episode's failure
            error = f"step {steps}: {ENVIRONMENT_CRASHED}: {err!r}"
            break
        steps += 1
        success = bool(info["is_success"])
        if frames is not None:
            frames.append(observation["rgb"])
        if terminated or truncated:
            break
    seconds = time.perf_counter() - start
    if frames is not None:
        from aem_bench.media import write_video

        write_video(frames, video)
    return EpisodeRecord(seed, success, steps, seconds, latencies_ms, error, encoder_ms,
                         reset_seconds, round(_peak_rss_mb(), 1),
                         None if video is None else str(video))


class EpisodeLog:
    """An append-only JSONL file of finished episodes, so that a killed evaluation resumes.

    The first line names the run (task, environment kwargs, policy, seeds); every other line is
    one :class:`EpisodeRecord`, written and flushed to disk as the episode ends (the file is made
    with the first episode: a run that stops before leaves none). Reopening the log of the same
    run returns the episodes already done; a log of another run (another checkpoint, when the
    header has its ``checkpoint_digest``) is refused. A last line cut short by a kill is dropped
    (that episode runs again); any other bad line is an error naming the line.
    """

    def __init__(self, path: str | os.PathLike, header: dict):
        self.path = Path(path)
        self.done: dict[int, EpisodeRecord] = {}
        self._header: dict | None = header
        if self.path.is_file() and self.path.stat().st_size:
            self._read(header)
            self._header = None

    def _read(self, header: dict) -> None:
        lines = self.path.read_text().splitlines()
        parsed = []
        for number, line in enumerate(lines, start=1):
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise ValueError(f"{self.path}:{number}: not a JSON line; the episode log is "
                                     "corrupt (move it away to start over)") from None
                # The last line, cut short by a kill: drop it, its episode runs again.
                self.path.write_text("".join(line + "\n" for line in lines[:-1]))
        found = parsed[0].get("header") if parsed else None
        if (isinstance(found, dict) and "checkpoint_digest" in header
                and found.get("checkpoint_digest") != header["checkpoint_digest"]):
            raise ValueError(f"{self.path} holds episodes of another checkpoint (digest "
                             f"{str(found.get('checkpoint_digest'))[:12]}, this one "
                             f"{header['checkpoint_digest'][:12]}): remove it to evaluate this "
                             "checkpoint afresh, or pass another --log")
        if found != json.loads(json.dumps(header)):
            raise ValueError(f"{self.path} is the log of another evaluation ({found}), not of "
                             f"{header}: pass another --log or remove it")
        for number, entry in enumerate(parsed[1:], start=2):
            try:
                record = EpisodeRecord(**entry)
            except TypeError as err:
                raise ValueError(f"{self.path}:{number}: not an episode record: {err}") from None
            self.done[record.seed] = record

    def append(self, record: EpisodeRecord) -> None:
        if self._header is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"header": self._header}) + "\n")
            self._header = None
        with open(self.path, "a") as f:
            f.write(json.dumps(record.to_log(), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def checkpoint_digest(directory: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint's ``config.json`` and ``model.safetensors``: which model it is."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        digest.update(name.encode() + b"\0")
        with open(Path(directory) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


_WORKER: tuple | None = None  # (policy, env) of a worker process


def _start_worker(make_policy, env_id: str, env_kwargs: dict) -> None:
    global _WORKER
    _WORKER = (make_policy(), gym.make(env_id, **env_kwargs))


def _run_in_worker(seed: int, video: str | None) -> EpisodeRecord:
    policy, env = _WORKER
    return run_episode(env, policy, seed, video)


def _episodes(policy, env_id: str, env_kwargs: dict, seeds: list[int], workers: int,
              videos: dict[int, Path], backend: str = "local", address: str | None = None):
    """EpisodeRecords of ``seeds``, as they finish: in this process, or in ``workers`` processes
    or Ray actors that each build their own policy (``policy`` is then a picklable factory) and
    environment."""
    if backend == "ray":
        from aem_bench.ray_backend import ray_episodes  # Ray is an optional dependency

        yield from ray_episodes(policy, env_id, env_kwargs, seeds, workers, videos, address)
        return
    if workers == 1:
        env = gym.make(env_id, **env_kwargs)
        try:
            for seed in seeds:
                yield run_episode(env, policy, seed, videos.get(seed))
        finally:
            env.close()
        return
    # spawn, not fork: a forked SAPIEN renderer or OpenMP pool is not safe to use in the child.
    # concurrent.futures, not multiprocessing.Pool: when a worker dies (a segfault in the
    # simulator, the OOM killer) Pool waits forever, while the executor raises BrokenProcessPool.
    pool = ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"), _start_worker,
                               (policy, env_id, env_kwargs))
    try:
        futures = {pool.submit(_run_in_worker, seed, videos.get(seed)): seed for seed in seeds}
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool as err:
                raise EvaluationError(
                    f"a worker process died (killed, out of memory, or crashed in native code; "
                    f"its stderr is above) while seed {futures[future]} or another was "
                    f"running") from err
    finally:
        # On an error, do not wait for the queued episodes: stop now, keep what is logged.
        pool.shutdown(wait=False, cancel_futures=True)


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
    the report (default: read from a zoo policy's config, else "custom").
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
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"address={address!r} is a Ray cluster's: it needs backend='ray'")
    is_factory = callable(policy) and not hasattr(policy, "act")
    if workers > 1 and not is_factory:
        raise ValueError("workers > 1 needs a function that makes the policy, not a policy")
    if backend == "ray" and not is_factory:
        raise ValueError("backend='ray' needs a function that makes the policy, not a policy")
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
    run_policy = policy() if is_factory and workers == 1 and backend == "local" else policy
    config = getattr(run_policy, "config", None)
    if hasattr(config, "policy_type"):  # a zoo policy names its parts
        from aem_bench.policies import leaderboard_parts

        zoo_encoder, zoo_head = leaderboard_parts(config)
        encoder, head = encoder or zoo_encoder, head or zoo_head
    with progress_bar(total=episodes, initial=len(done), desc=env_id, unit="ep",
                      disable=not progress) as bar:
        try:
            for record in _episodes(run_policy, env_id, env_kwargs, todo, workers, videos,
                                    backend, address):
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
            raise ValueError(f"video seeds {unknown} are not among this evaluation's seeds "
                             f"({seeds[0]}...{seeds[-1]})")
    stem = env_id.replace("/", "_")
    return {seed: Path(video_dir) / f"{stem}_seed{seed}.{video_format}" for seed in chosen}


def write_report(report: EvalReport, path: str | os.PathLike) -> Path:
    """Write the report as strict JSON (no NaN) so that reading it back gives ``report.to_dict()``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    return path
