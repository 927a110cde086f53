"""Where episodes run: one interface, three implementations.

What lives here: :class:`Backend` (given a policy, a task and seeds, yield one
:class:`EpisodeRecord` per seed as it finishes) and its implementations: :class:`InlineBackend`
(this process), :class:`ProcessPoolBackend` (worker processes on this machine) and
:class:`RayBackend` (Ray actors, on this machine or a Ray cluster); :func:`make_backend` picks one
from ``evaluate``'s arguments. Every implementation runs :func:`run_episode`, so the records do
not depend on where they were made. :func:`connect_ray` is the one Ray set-up, shared with the
sweep's Ray backend. It imports the episode module and Gymnasium; Ray, an optional dependency,
only inside the functions that use it (:func:`import_ray`), so that the package imports without
it. Never the tasks (environments are made by id through Gymnasium) or the policy zoo (a worker's
policy comes from the caller's picklable factory).
"""

from __future__ import annotations

import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import gymnasium as gym

from aem_bench.evaluator.episode import EpisodeRecord, EvaluationError, run_episode


class Backend(ABC):
    """Runs the episodes of one evaluation and yields their records in the order they finish.

    ``in_process``: the episodes run in this process on the policy object itself; otherwise each
    worker builds its own policy, and ``episodes`` gets a picklable factory instead.
    """

    workers: int = 1
    in_process: bool = False

    @abstractmethod
    def episodes(self, policy, env_id: str, env_kwargs: dict, seeds: list[int],
                 videos: dict[int, Path]) -> Iterator[EpisodeRecord]:
        """The records of ``seeds`` as they finish (``videos``: seed -> file to write). An
        episode that cannot finish because the policy raised or a worker died raises
        :class:`EvaluationError`; records yielded before stay valid."""


class InlineBackend(Backend):
    """One environment in this process, the episodes one after another."""

    in_process = True

    def episodes(self, policy, env_id, env_kwargs, seeds, videos):
        env = gym.make(env_id, **env_kwargs)
        try:
            for seed in seeds:
                yield run_episode(env, policy, seed, videos.get(seed))
        finally:
            env.close()


_WORKER: tuple | None = None  # (policy, env) of a worker process


def _start_worker(make_policy, env_id: str, env_kwargs: dict) -> None:
    global _WORKER
    _WORKER = (make_policy(), gym.make(env_id, **env_kwargs))


def _run_in_worker(seed: int, video: str | None) -> EpisodeRecord:
    policy, env = _WORKER
    return run_episode(env, policy, seed, video)


class ProcessPoolBackend(Backend):
    """``workers`` processes on this machine, each with its own policy and environment."""

    def __init__(self, workers: int):
        self.workers = workers

    def episodes(self, policy, env_id, env_kwargs, seeds, videos):
        # spawn, not fork: a forked SAPIEN renderer or OpenMP pool is not safe to use in the child.
        # concurrent.futures, not multiprocessing.Pool: when a worker dies (a segfault in the
        # simulator, the OOM killer) Pool waits forever, while the executor raises
        # BrokenProcessPool. It does not say which worker died, so at most one episode per worker
        # is handed out at a time: the seeds running then are the ones the error names.
        pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                   _start_worker, (policy, env_id, env_kwargs))
        queue = iter(seeds)
        running = {}  # future -> its seed
        refused = []  # the pool broke before it took the next seed: an episode running failed

        def submit() -> None:
            seed = None if refused else next(queue, None)
            if seed is not None:
                try:
                    running[pool.submit(_run_in_worker, seed, videos.get(seed))] = seed
                except BrokenProcessPool as err:
                    refused.append(err)

        try:
            for _ in range(self.workers):
                submit()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                records, lost, broken, failed = _collect(done, running)
                if failed is not None:  # the policy raised: the records before it are kept
                    yield from records
                    raise failed
                if broken is not None:
                    # The pool is broken: the other episodes running end too, some perhaps
                    # finished just before. Every finished one is kept (the log has it).
                    more, lost_too, _, _ = _collect(wait(running, timeout=60).done, running)
                    lost_too += running.values()  # still unanswered: as good as lost
                    yield from sorted([*records, *more], key=lambda record: record.seed)
                    raise EvaluationError(
                        f"a worker process died (killed, out of memory, crashed in native code, "
                        f"or its policy or environment failed to build; its stderr is above) "
                        f"while seed(s) {', '.join(map(str, sorted(lost + lost_too)))} were "
                        f"running") from broken
                for _ in done:
                    submit()  # before yielding: the freed worker starts the next episode
                yield from records
            if refused:  # not seen on any episode: say so rather than stop short unexplained
                raise EvaluationError("the worker processes stopped (one died: killed, out of "
                                      "memory, or crashed in native code; its stderr is above)"
                                      ) from refused[0]
        finally:
            # On an error, do not wait for the queued episodes: stop now, keep what is logged.
            pool.shutdown(wait=False, cancel_futures=True)


def _collect(done, running: dict) -> tuple[list[EpisodeRecord], list[int], Exception | None,
                                          Exception | None]:
    """What the futures ``done`` (taken out of ``running``, future -> seed) gave: their records,
    the seeds whose worker died, the pool's BrokenProcessPool if one did, and the first other
    error (the policy raised: run_episode's EvaluationError), for the caller to raise once the
    records are kept."""
    records, lost, broken, failed = [], [], None, None
    for future in sorted(done, key=running.get):
        seed = running.pop(future)
        try:
            records.append(future.result())
        except BrokenProcessPool as err:
            lost.append(seed)
            broken = err
        except Exception as err:  # noqa: BLE001 -- raised by the caller, after the records
            failed = failed or err
    return records, lost, broken, failed


RAY_MISSING = "the Ray backend needs Ray, which is not installed: pip install 'aem-bench[ray]'"


def import_ray():
    """The ``ray`` module, or an error that says which extra installs it: Ray is optional, and a
    run asked to use it never falls back to another backend."""
    try:
        import ray
    except ModuleNotFoundError as err:
        if err.name != "ray":  # Ray is there but broken: its own error says more
            raise
        raise ModuleNotFoundError(RAY_MISSING, name="ray") from err
    return ray


def connect_ray(address: str | None = None):
    """Join the Ray cluster at ``address``, or start a local instance when there is none; the
    ``ray`` module.

    An instance this process already joined (``ray.init`` called by the caller) is used as is. A
    local instance started here lives until the process exits, so that evaluating several tasks
    in a row does not pay Ray's start-up each time; a cluster is never shut down from here.
    """
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address)
    return ray


def describe_ray_error(err: Exception) -> str:
    """A Ray error in one line: its type and the first line of its message (the rest is Ray's
    traceback of the worker, already in the worker's log)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


class EpisodeRunner:
    """The state of one Ray worker: a policy and an environment, made once."""

    def __init__(self, make_policy: Callable, env_id: str, env_kwargs: dict):
        self.policy = make_policy()
        self.env = gym.make(env_id, **env_kwargs)

    def run(self, seed: int, video: str | None) -> EpisodeRecord:
        return run_episode(self.env, self.policy, seed, video)


class RayBackend(Backend):
    """``workers`` Ray actors (one CPU each), on the cluster at ``address``, on the instance this
    process already joined, or on a local instance started for it.

    Why Ray next to the process pool: a cluster spreads one evaluation over several machines, and
    Ray reports a dead worker (a segfault in the simulator, the OOM killer, a lost node) as an
    error on the episode it was running instead of hanging. Each actor builds its policy from the
    picklable factory and its environment once, then runs one seed at a time, so a slow episode
    never holds back the queue. Videos are written by the actor, so on a cluster their paths are
    on the actor's node.
    """

    def __init__(self, workers: int, address: str | None = None):
        self.workers = workers
        self.address = address

    def episodes(self, policy, env_id, env_kwargs, seeds, videos):
        ray = import_ray()  # before anything: without Ray, backend="ray" fails with nothing to run

        if not seeds:
            return
        connect_ray(self.address)
        # max_restarts=0: a restarted actor would rerun nothing by itself, and a crash must surface.
        runner_class = ray.remote(num_cpus=1, max_restarts=0)(EpisodeRunner)
        runners = [runner_class.remote(policy, env_id, env_kwargs)
                   for _ in range(min(self.workers, len(seeds)))]
        queue = iter(seeds)
        running = {}  # ObjectRef of a run -> (the actor running it, its seed)

        def submit(runner) -> None:
            seed = next(queue, None)
            if seed is not None:
                video = videos.get(seed)
                running[runner.run.remote(seed, None if video is None else str(video))] = (
                    runner, seed)

        try:
            for runner in runners:
                submit(runner)
            while running:
                [ready], _ = ray.wait(list(running), num_returns=1)
                runner, seed = running.pop(ready)
                record = _ray_result(ready, seed)
                submit(runner)  # before yielding: the actor works while the caller logs
                yield record
        finally:
            # On an error or an abandoned generator, stop the queued episodes now: keep what is
            # done.
            for runner in runners:
                ray.kill(runner)


def _ray_result(ref, seed: int) -> EpisodeRecord:
    import ray
    from ray.exceptions import RayError, RayTaskError

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
            f"{describe_ray_error(err)}") from err


BACKENDS = ("local", "ray")


def check_backend_choice(backend: str, address: str | None) -> None:
    """A backend name (:data:`BACKENDS`), and a Ray cluster's address only with "ray"."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"address={address!r} is a Ray cluster's: it needs backend='ray'")


def make_backend(backend: str, workers: int, address: str | None = None) -> Backend:
    """The backend that ``evaluate(backend=..., workers=..., address=...)`` names: "local" is
    this process for one worker and a process pool for more, "ray" is Ray actors."""
    check_backend_choice(backend, address)
    if backend == "ray":
        return RayBackend(workers, address)
    return InlineBackend() if workers == 1 else ProcessPoolBackend(workers)
