"""One episode of a policy on an environment, and the record it leaves.

What lives here: the :class:`Policy` protocol (what the evaluator needs from a policy),
:class:`EpisodeRecord` with its two serialisations (the episode log's full line and the results
file's summary), the check of a policy's action (:func:`invalid_action`) and :func:`run_episode`,
which raises :class:`EvaluationError` (``aem_bench.errors``). Every other module of the package
builds on these. It imports Gymnasium and NumPy, and of aem-bench only ``aem_bench.errors`` and
``aem_bench.media`` (to write a video); never the tasks, the policy zoo or anything above the
evaluator.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from typing import Protocol

import gymnasium as gym
import numpy as np

from aem_bench.errors import EvaluationError


class Policy(Protocol):
    """What the evaluator needs from a policy.

    Optional: a ``last_encoder_ms`` attribute, the milliseconds the last ``act`` spent encoding
    observations (vision and memory, not the action head), or None when that call encoded
    nothing (it executed an action planned before). The evaluator reports it as encoder latency.
    """

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observation: dict) -> np.ndarray: ...


def latency_summary(latencies_ms: list[float]) -> dict:
    """Median and 95th percentile, rounded as results files store them (None for no calls)."""
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
            "latency_ms": latency_summary(self.latencies_ms),
            "error": self.error,
            "video": self.video,
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
