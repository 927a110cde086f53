"""`aem-bench sweep`: the policy rows x tasks x scenes of a leaderboard under one protocol.

A cell is one row (a zoo policy with its settings, :data:`ROWS`) on one task in one scene. Making
it takes stages, each a file or folder in the sweep's cache (``CACHE/TASK/...``), built once and
shared by every cell that needs it:

- ``demos.h5``: the protocol's demonstrations of the task (a memory task's with its oracle),
  read by every row and every submitted encoder (``aem_bench.submit``) trained on the task; one
  found damaged is refused, naming it, rather than recorded over;
- ``corpus.h5`` and ``aem-pre-ABLATION/``: AEM pretraining episodes and the pretraining run;
- ``ROW/``: the row's checkpoint (a submission's row too); a row that takes another row's frame
  encoder (``encoder_from``) builds that row's checkpoint first;
- ``ROW/eval_SCENE.jsonl``: the evaluation's episode log;

and the cell's results file, ``RESULTS/ROW_TASK_PROTOCOL.json``. Each stage is resumable
(recording is renamed into place when complete; training resumes from its last save; evaluation
from its episode log), so a sweep killed at any point continues where it stopped, and a cell whose
results file exists is done. A stage is built under a file lock, so workers that need the same
demonstrations or encoder wait for one of them to build it.

The cells run in worker processes on this machine or as Ray tasks (:func:`run`). Either way the
workers share the cache through the filesystem and its locks (``fcntl``), so on a Ray cluster of
several machines the cache and the results folder must be on storage that every node mounts at
the same path and whose locks hold across machines (NFSv4 or another POSIX filesystem with
working ``flock``), given as absolute paths.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from aem_bench.errors import InputError, read_json
from aem_bench.recipe import Protocol

DONE = ".done"  # in a checkpoint folder: training reached the protocol's steps
CACHE_ROOT = Path("runs/sweep")  # the default cache is CACHE_ROOT/PROTOCOL


def default_cache(protocol: Protocol) -> Path:
    """The protocol's default cache: every sweep and submission under it shares its stages."""
    return CACHE_ROOT / protocol.name


@dataclass(frozen=True)
class Row:
    """One row of the leaderboard's matrix: a zoo policy, its settings, and what it builds on."""

    name: str
    policy: str
    overrides: dict = field(default_factory=dict)
    # Another row whose trained frame encoder this one takes, frozen: the memory rows take the
    # single-frame DP's, so that their comparison with it changes the memory and nothing else.
    encoder_from: str | None = None
    # AEM: the pretraining ablation (`configuration_aem.ABLATIONS`) of the history it builds on.
    aem_ablation: str | None = None
    description: str = ""

    @property
    def reads_oracle(self) -> bool:
        """Reads a memory task's control input (the oracle or the fact): not a memory row."""
        return bool({"oracle", "fact"} & set(self.overrides.get("state_keys", ())))


def _aem_row(ablation: str, description: str) -> Row:
    """``aem-dp-ABLATION``: aem-dp under an AEM ablation, over the single-frame DP's encoder."""
    return Row(f"aem-dp-{ablation}", "aem-dp", encoder_from="singleframe-dp",
               aem_ablation=ablation, description=description)


ORACLE = {"state_keys": ["qpos", "oracle"]}
FACT = {"state_keys": ["qpos", "fact"]}
READOUT = {"memory_readout": "oracle"}
ROWS: dict[str, Row] = {row.name: row for row in (
    Row("singleframe-dp", "singleframe-dp", description="one frame and the joint state"),
    Row("singleframe-dp-with-oracle", "singleframe-dp", ORACLE,
        description="the same, given what the hidden fact says to do: the upper bound"),
    Row("singleframe-dp-with-fact", "singleframe-dp", FACT,
        description="the same, given the hidden fact alone (the colour, not its place)"),
    Row("singleframe-dp-frozen-encoder", "singleframe-dp", encoder_from="singleframe-dp",
        description="a new head over the single-frame DP's frozen encoder, without a memory: "
                    "the memory rows' control, which changes only the training"),
    Row("singleframe-dp-frozen-encoder-with-oracle", "singleframe-dp", ORACLE,
        encoder_from="singleframe-dp",
        description="the control given the oracle: what a perfect memory over the single-frame "
                    "DP's frozen encoder could reach, the memory rows' upper bound"),
    Row("framestack-dp", "framestack-dp", encoder_from="singleframe-dp",
        description="the last 8 frames' features over the single-frame DP's frozen encoder"),
    Row("gru-dp", "gru-dp", encoder_from="singleframe-dp",
        description="a GRU trained with the head through whole episodes"),
    Row("gru-dp-readout", "gru-dp", READOUT, encoder_from="singleframe-dp",
        description="a GRU trained to estimate the oracle from the past (privileged labels in "
                    "training); the head acts on its estimate"),
    *(_aem_row(ablation, description) for ablation, description in (
        ("episode-causal", "AEM's history pretrained from step 0 over whole episodes, frozen"),
        ("episode", "the same windows without the causal term (masked reconstruction alone)"),
        ("episode-bottleneck",
         "the same windows, the decoder reading the history vector alone (the paper's bottleneck)"),
        ("episode-causal-finetune",
         "the same history fine-tuned with the head through whole episodes"),
        ("episode-no-pretraining", "AEM's Mamba from random weights, trained with the head"),
        ("episode-causal-finetune-readout",
         ("the history fine-tuned through whole episodes by a readout of the oracle (privileged "
          "labels in training); the head acts on the readout's estimate")),
        ("episode-causal-readout", ("the frozen history read by a linear estimate of the "
                                    "oracle (privileged labels in training); the head acts on it")),
        ("full", "AEM as in the paper: 32-step windows, frozen history"),
        # The paper's ablation table (`ABLATION_ROWS`), each one change from "full".
        ("feature-add", "the history added to the frame's features instead of concatenated"),
        ("no-pretraining", "a fresh Mamba over the last 16 steps, trained with the head"),
        ("memory-only", "the head reads the history vector alone, not the current frame"),
        ("no-actions", "AEM pretrained on frames alone, without the action tokens"),
    )),
)}


# The AEM paper's ablation table (its Table: full, feature-add, no-pretraining, memory-only,
# no-actions), reproduced on HandoverBlock and PlaceObjectBasket under the standard protocol.
ABLATION_ROWS = ("singleframe-dp", "singleframe-dp-frozen-encoder", "aem-dp-full",
                 "aem-dp-feature-add", "aem-dp-no-pretraining", "aem-dp-memory-only",
                 "aem-dp-no-actions")
ABLATION_TASKS = ("AEM/HandoverBlock-v0", "AEM/PlaceObjectBasket-v0")
# The leaderboard's matrix (a sweep without --rows): per suite, the single frame and aem-dp at
# its defaults; on the memory suite also the oracle's upper bound and two more memories, all
# over the single frame's frozen encoder (the control without a memory, a new head over that
# encoder, is the row singleframe-dp-frozen-encoder).
MATRIX_ROWS = {
    "manipulation": ("singleframe-dp", "aem-dp-episode-causal-finetune"),
    "memory": ("singleframe-dp", "singleframe-dp-with-oracle", "framestack-dp", "gru-dp",
               "aem-dp-episode-causal-finetune"),
}


@dataclass(frozen=True)
class Cell:
    row: Row
    task: str  # the clean task id: demonstrations and training are the clean scene's
    scene: str

    @property
    def eval_task(self) -> str:
        from aem_bench.registration import variant_id

        return variant_id(self.task, self.scene)

    def results_file(self, results_dir: Path, protocol: Protocol) -> Path:
        return results_dir / f"{self.row.name}_{self.eval_task.split('/')[-1]}_{protocol.name}.json"


def cells(protocol: Protocol, rows: list[str] | None = None, tasks: list[str] | None = None,
          scenes: list[str] | None = None) -> list[Cell]:
    """The sweep's cells, rows that others build on first (so workers rarely wait). Without
    ``rows``, each task's suite's :data:`MATRIX_ROWS`. A task whose cells another protocol makes
    (``Protocol.home``) is evaluated in that one's scenes unless ``scenes`` are given."""
    from aem_bench.registration import get_task

    unknown = [name for name in rows or () if name not in ROWS]
    if unknown:
        raise ValueError(f"unknown sweep rows {unknown}; rows: {sorted(ROWS)}")

    def rows_of(task: str) -> tuple[str, ...]:
        return tuple(rows) if rows else MATRIX_ROWS["memory" if get_task(task).memory else
                                                    "manipulation"]

    tasks = list(tasks or protocol.tasks)
    order = sorted(dict.fromkeys(name for task in tasks for name in rows_of(task)),
                   key=lambda name: ROWS[name].encoder_from is not None)
    return [Cell(ROWS[name], task, scene) for name in order for task in tasks
            if name in rows_of(task) for scene in (scenes or protocol.home(task).scenes)]


# ------------------------------------------------------------------------------------- stages
@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s lock file while one worker builds ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Sweep:
    protocol: Protocol
    cache: Path
    results_dir: Path
    progress: bool = True
    command: str | None = None
    video_dir: Path | None = None  # a GIF of each cell's first evaluation episode, when given
    # The demonstration files found loadable by this process: each is read once, not per stage.
    _loadable: set = field(default_factory=set, init=False, repr=False, compare=False)

    def for_task(self, task: str) -> Sweep:
        """The sweep that makes ``task``'s cells: this one, or, where the protocol shares them
        with another (``Protocol.home``), that protocol's, in its default cache when this sweep
        is in its own default cache (else in this sweep's cache)."""
        home = self.protocol.home(task)
        if home is self.protocol:
            return self
        cache = default_cache(home) if self.cache == default_cache(self.protocol) else self.cache
        return replace(self, protocol=home, cache=cache)

    def task_dir(self, task: str) -> Path:
        return self.cache / task.split("/")[-1]

    def checkpoint_dir(self, task: str, row: Row) -> Path:
        return self.task_dir(task) / row.name

    def _say(self, message: str) -> None:
        if self.progress:
            print(message, flush=True)

    def demos_file(self, task: str, corpus: bool = False) -> Path:
        return self.task_dir(task) / ("corpus.h5" if corpus else "demos.h5")

    def demos(self, task: str, corpus: bool = False) -> Path:
        """The task's demonstrations (or AEM's pretraining corpus), recorded once."""
        from aem_bench.expert import record_demos
        from aem_bench.registration import get_task

        path = self.demos_file(task, corpus)
        with _locked(path):
            if path.is_file():
                self._check_demos(path, task)
            else:
                p = self.protocol
                episodes = p.corpus_episodes if corpus else p.budget(task)[0]
                seed = p.corpus_seed if corpus else p.demo_seed
                env_kwargs = {"camera_size": (p.camera, p.camera)}
                if get_task(task).memory is not None:
                    env_kwargs["obs_mode"] = "rgb+oracle"
                self._say(f"{task}: recording {episodes} expert episodes to {path}")
                record_demos(task, episodes, path, seed=seed, progress=self.progress,
                             **env_kwargs)
        return path

    def _check_demos(self, path: Path, task: str) -> None:
        """A cached recording must load and be the task's at the protocol's camera. A damaged
        one is refused, not recorded again over: it may be the only copy of hours of recording,
        and a file that went bad unnoticed should be looked at before it is replaced."""
        from aem_bench.demos import DemoFileError, load_demos

        if path in self._loadable:
            return
        recover = f"move {path} away to record it again"
        try:
            demos = load_demos(path)
        except DemoFileError as err:
            raise InputError(f"{err}; {recover}") from None
        camera = [self.protocol.camera, self.protocol.camera]
        if demos.env_id != task or demos.env_kwargs.get("camera_size") != camera:
            raise InputError(f"{path} holds {demos.env_id} at camera "
                             f"{demos.env_kwargs.get('camera_size')}, not {task} at {camera}: "
                             f"another protocol's cache? {recover}")
        self._loadable.add(path)

    def pretraining(self, task: str, ablation: str, encoder: Path) -> Path:
        """AEM pretrained under ``ablation`` on the task's corpus, over ``encoder``'s frames."""
        from aem_bench.policies.configuration_aem import ablation as settings
        from aem_bench.policies.configuration_aem import pretraining_run
        from aem_bench.policies.pretraining import pretrain

        same = pretraining_run(ablation)
        path = self.task_dir(task) / f"aem-pre-{same}"
        with _locked(path):
            if not (path / DONE).is_file():
                # Asked for only now: a finished stage does not read (nor check) its recording.
                corpus = self.demos(task, corpus=True)
                self._say(f"{task}: AEM pretraining ({same}) in {path}")
                pretrain(corpus, path, steps=self.protocol.pretrain_steps,
                         seed=self.protocol.train_seed,
                         config_overrides={**settings(same, "pretrain"),
                                           "encoder_checkpoint": str(encoder)},
                         num_threads=self.protocol.threads, resume=True,
                         progress=self.progress, command=self.command)
                (path / DONE).touch()
        return path

    def checkpoint(self, task: str, row: Row) -> Path:
        """The row's policy trained on the task's demonstrations."""
        from aem_bench.policies.configuration_aem import ablation as settings
        from aem_bench.policies.training import train

        path = self.checkpoint_dir(task, row)
        overrides = dict(row.overrides)
        encoder = self.checkpoint(task, ROWS[row.encoder_from]) if row.encoder_from else None
        if row.aem_ablation is not None:
            policy_settings = settings(row.aem_ablation, "policy")
            history = policy_settings.pop("history", None)
            overrides.update(policy_settings)
            if history:
                overrides["history"] = history
            overrides["aem_checkpoint"] = str(self.pretraining(task, row.aem_ablation, encoder))
        elif encoder is not None:
            overrides["encoder_checkpoint"] = str(encoder)
        with _locked(path):
            if not (path / DONE).is_file():
                demos = self.demos(task)  # as for the corpus: only for a stage left to build
                _, steps = self.protocol.budget(task)
                self._say(f"{task}: training {row.name} for {steps} steps in {path}")
                train(row.policy, demos, path, steps=steps, batch_size=self.protocol.batch_size,
                      seed=self.protocol.train_seed, config_overrides=overrides,
                      num_threads=self.protocol.threads, resume=True, progress=self.progress,
                      command=self.command)
                (path / DONE).touch()
        return path

    def run_cell(self, cell: Cell) -> Path:
        """Build what the cell needs and evaluate it; its results file."""
        from aem_bench.evaluator import write_report

        if (home := self.for_task(cell.task)) is not self:
            return home.run_cell(cell)
        out = cell.results_file(self.results_dir, self.protocol)
        if out.is_file():
            check_result(out, self.protocol)
            return out
        started = time.perf_counter()
        report = self.evaluate_cell(cell)
        write_report(report, out)
        self._say(f"{cell.row.name} on {cell.eval_task}: {report.successes}/"
                  f"{len(report.records)} ({time.perf_counter() - started:.0f} s); "
                  f"written to {out}")
        return out

    def evaluate_cell(self, cell: Cell):
        """The cell's evaluation report, its checkpoint built first; resumes from its episode
        log, so a cell already evaluated is read back, not run again."""
        from aem_bench.checkpoint_eval import evaluate_checkpoint

        if (home := self.for_task(cell.task)) is not self:
            return home.evaluate_cell(cell)
        checkpoint = self.checkpoint(cell.task, cell.row)
        p = self.protocol
        report = evaluate_checkpoint(
            checkpoint, cell.eval_task, p.eval_episodes, p.eval_seed,
            name=cell.row.name + p.policy_suffix, threads=p.threads,
            progress=self.progress, log=checkpoint / f"eval_{cell.scene}.jsonl",
            video_dir=self.video_dir and self.video_dir / cell.row.name, video_episodes=1)
        if all(record.error is not None for record in report.records):
            raise RuntimeError(f"{cell.row.name} on {cell.eval_task}: every episode errored, "
                               f"the first with: {report.records[0].error}")
        report.training = {**report.training, "protocol": p.to_dict(), "row": cell.row.name}
        return report


def check_result(path: Path, protocol: Protocol) -> None:
    """A results file the sweep would reuse as its cell: evaluated as the protocol says."""
    recover = "move it away, or give the sweep another --results-dir"
    result = read_json(path, recover)
    if not isinstance(result, dict):
        raise InputError(f"{path}: damaged (not a JSON object); {recover}")
    seeds = result.get("seeds") or []
    if result.get("episodes") != protocol.eval_episodes or (seeds and seeds[0] < protocol.eval_seed):
        raise InputError(f"{path} holds {result.get('episodes')} episodes from seed "
                         f"{seeds[0] if seeds else '?'}, not the '{protocol.name}' protocol's "
                         f"{protocol.eval_episodes} from {protocol.eval_seed}: move it away, or "
                         "give the sweep another --results-dir")


# ------------------------------------------------------------------------------------- status
def cell_state(sweep: Sweep, cell: Cell) -> str:
    """"done" (results file), "stale" (a results file of the protocol's name that it would
    refuse: another evaluation), "trained" (checkpoint, not evaluated), "training" (a saved
    step) or "left"."""
    sweep = sweep.for_task(cell.task)
    out = cell.results_file(sweep.results_dir, sweep.protocol)
    if out.is_file():
        try:
            check_result(out, sweep.protocol)
        except InputError:
            return "stale"  # another evaluation under the protocol's name: refused when run
        return "done"
    path = sweep.checkpoint_dir(cell.task, cell.row)
    if (path / DONE).is_file():
        return "trained"
    return "training" if (path / "train_log.jsonl").is_file() else "left"


# Rough costs on one core of this project's 2-core VMs at 64x64, batch 64, one torch thread,
# for a dry run's estimate before any cell has run: seconds per training step, by zoo policy.
SECONDS_PER_STEP = {"singleframe-dp": 0.27, "framestack-dp": 0.15, "gru-dp": 0.5,
                    "aem-dp": 0.15}
# An AEM history trained through whole episodes: 0.55 s on SwapBlocks-v1's (about 430 steps).
SECONDS_PER_FINETUNE_STEP = 0.5
SECONDS_PER_EVAL_STEP = 0.015  # an environment step and a policy call, rendered at 64x64


def estimate_minutes(sweep: Sweep, cell: Cell) -> float:
    """What is left of the cell, in core-minutes: training (from its saved step) and
    evaluation; shared stages (demonstrations, pretraining, the encoder's row) not included."""
    from aem_bench.registration import get_task

    sweep = sweep.for_task(cell.task)
    state = cell_state(sweep, cell)
    if state == "done":
        return 0.0
    _, steps = sweep.protocol.budget(cell.task)
    path = sweep.checkpoint_dir(cell.task, cell.row)
    per_step = SECONDS_PER_STEP.get(cell.row.policy, 0.3)
    if cell.row.aem_ablation in ("episode-causal-finetune", "episode-no-pretraining",
                                 "episode-causal-finetune-readout"):
        per_step = SECONDS_PER_FINETUNE_STEP
    done_steps = 0
    log = path / "train_log.jsonl"
    last = _last_logged(log) if log.is_file() else None
    if last is not None:
        done_steps = last["step"]
        per_step = last["seconds"] / max(done_steps, 1)  # measured on this run
    train = 0.0 if state == "trained" else max(steps - done_steps, 0) * per_step
    evaluate = (sweep.protocol.eval_episodes * get_task(cell.task).max_episode_steps
                * SECONDS_PER_EVAL_STEP)
    return (train + evaluate) / 60


def _last_logged(log: Path) -> dict | None:
    """The last entry of a training log (None if it has none). A last line cut short by a kill
    is passed over, as training does on resuming; any other bad line is an :class:`InputError`
    naming it."""
    lines = log.read_text().splitlines()
    for index in range(len(lines) - 1, max(len(lines) - 3, -1), -1):
        try:
            entry = json.loads(lines[index])
        except json.JSONDecodeError:
            if index == len(lines) - 1:
                continue  # cut short: the line before is the last step logged
            entry = None
        if (isinstance(entry, dict) and isinstance(entry.get("step"), int)
                and isinstance(entry.get("seconds"), int | float)):
            return entry
        raise InputError(f"{log}:{index + 1}: not a training log entry; the log is damaged "
                         f"(move {log.parent} away to train that cell afresh)")
    return None


def spent_minutes(sweep: Sweep, cell: Cell) -> float:
    """Core-minutes the cell's own stages took so far: its training (as its log says) and its
    evaluation's finished episodes; shared stages (demonstrations, pretraining, the encoder's
    row) not included. A line the log cannot parse is not counted here; running the cell
    names it."""
    sweep = sweep.for_task(cell.task)
    path = sweep.checkpoint_dir(cell.task, cell.row)
    seconds = 0.0
    log = path / "train_log.jsonl"
    if log.is_file() and (last := _last_logged(log)) is not None:
        seconds += last["seconds"]
    episodes = path / f"eval_{cell.scene}.jsonl"
    if episodes.is_file():
        for line in episodes.read_text().splitlines()[1:]:
            try:
                seconds += float(json.loads(line).get("seconds", 0.0))
            except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
                continue
    return seconds / 60


def status_table(sweep: Sweep, all_cells: list[Cell]) -> str:
    from tabulate import tabulate

    rows = [[cell.row.name, cell.eval_task, cell_state(sweep, cell),
             f"{spent_minutes(sweep, cell):.0f}", f"{estimate_minutes(sweep, cell):.0f}"]
            for cell in all_cells]
    left = sum(estimate_minutes(sweep, cell) for cell in all_cells)
    spent = sum(spent_minutes(sweep, cell) for cell in all_cells)
    counts = {state: sum(r[2] == state for r in rows)
              for state in ("done", "stale", "trained", "training", "left")}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    return (tabulate(rows, headers=["row", "task", "state", "core-minutes so far",
                                    "core-minutes left"], tablefmt="github")
            + f"\n\n{len(rows)} cells: {summary}; {spent / 60:.1f} core-hours so far, about "
              f"{left / 60:.1f} left")


# ------------------------------------------------------------------------------------- running
_core: int | None = None  # the core a worker process is pinned to


def _pin_worker(cores) -> None:
    global _core
    _core = cores.get()
    os.sched_setaffinity(0, {_core})  # one core each, as the protocol's latencies assume


def _run_in_worker(args: tuple[Sweep, Cell]) -> tuple[str, str | None]:
    sweep, cell = args
    try:
        return str(sweep.run_cell(cell)), None
    except Exception as err:  # noqa: BLE001 -- reported per cell; the other cells go on
        return _cell_name(cell), f"{type(err).__name__}: {err}"


def _cell_name(cell: Cell) -> str:
    return f"{cell.row.name} on {cell.eval_task}"


def run(sweep: Sweep, all_cells: list[Cell], workers: int = 1, backend: str = "local",
        address: str | None = None) -> list[str]:
    """Run the cells, at most ``workers`` at once, in the order given (rows that others build on
    first); the errors, one line per failed cell (the other cells go on).

    ``backend="local"``: this process for one worker, else worker processes, each pinned to a
    core of its own while there are enough. ``"ray"``: each cell a Ray task of one CPU, on the
    cluster at ``address``, on the instance this process already joined, or on a local instance
    started for it (:func:`aem_bench.evaluator.backends.connect_ray`); Ray places the tasks by
    CPU count and does not pin them to cores. Its workers reach the cache and the results folder
    by the paths in ``sweep``: on a cluster of several machines, absolute paths on shared
    storage (see the module's docstring).
    """
    from aem_bench.evaluator.backends import check_backend_choice

    check_backend_choice(backend, address)
    jobs = [(sweep, cell) for cell in all_cells]
    outcomes = (_on_ray(jobs, workers, address) if backend == "ray"
                else _in_processes(jobs, workers))
    errors = []
    for what, error in outcomes:
        if error is not None:
            errors.append(f"{what}: {error}")
            print(f"aem-bench sweep: error: {what}: {error}", flush=True)
    return errors


def _in_processes(jobs: list[tuple[Sweep, Cell]], workers: int):
    """The cells' outcomes from worker processes, one cell per worker at a time.

    concurrent.futures, not multiprocessing.Pool: when a worker dies (the OOM killer, a crash in
    native code) Pool waits forever for its cell, while the executor raises BrokenProcessPool.
    Which cell's worker died it does not say, and it stops every worker: the cells running then
    are each reported as stopped (their stages resume when the sweep runs again), and the cells
    not started yet run in a new pool."""
    from collections import deque

    if workers == 1:
        yield from map(_run_in_worker, jobs)
        return
    queue = deque(jobs)
    while queue:
        stopped = yield from _in_one_pool(queue, workers)
        names = [_cell_name(cell) for cell in stopped]
        for name in names:
            others = [other for other in names if other != name]
            yield name, ("a worker process died (killed, out of memory, crashed in native code, "
                         "or failed to start; its stderr is above) while this cell"
                         + (f" and {', '.join(others)} were" if others else " was")
                         + " running: stopped, it resumes when the sweep runs again")


def _in_one_pool(queue, workers: int):
    """Run the cells of ``queue`` (a deque, taken from the left) in one pool of ``workers``
    processes, each pinned to a core, yielding their outcomes; return the cells that were running
    when a worker died (the cells not started stay in ``queue``)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    cores = context.Queue()
    allowed = sorted(os.sched_getaffinity(0))
    for i in range(workers):
        cores.put(allowed[i % len(allowed)])
    pool = ProcessPoolExecutor(workers, context, initializer=_pin_worker, initargs=(cores,))
    running = {}  # future -> its cell
    stopped = []  # the cells running when a worker died

    def submit() -> None:
        if queue and not stopped:
            job = queue.popleft()
            try:
                running[pool.submit(_run_in_worker, job)] = job[1]
            except BrokenProcessPool:
                queue.appendleft(job)  # not started: the next pool runs it

    try:
        for _ in range(workers):
            submit()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            outcomes = []
            for future in done:
                cell = running.pop(future)
                try:
                    outcomes.append(future.result())
                except BrokenProcessPool:
                    stopped.append(cell)
                submit()  # before reporting: the freed worker takes the next cell at once
            yield from outcomes
    finally:
        # On an error or an abandoned generator, stop now: each cell's stages resume.
        pool.shutdown(wait=not running, cancel_futures=True)
    return stopped


def _on_ray(jobs: list[tuple[Sweep, Cell]], workers: int, address: str | None):
    from aem_bench.evaluator.backends import connect_ray, describe_ray_error

    ray = connect_ray(address)
    from ray.exceptions import RayError  # Ray is there: connect_ray would have said otherwise

    # max_retries=0: a worker that died (the OOM killer, a native crash, a lost node) is
    # reported for its cell rather than run again unseen.
    run_cell = ray.remote(num_cpus=1, max_retries=0)(_run_in_worker)
    queue = iter(jobs)
    running = {}  # ObjectRef of a cell's task -> the cell

    def submit() -> None:
        job = next(queue, None)
        if job is not None:
            running[run_cell.remote(job)] = job[1]

    try:
        for _ in range(workers):
            submit()
        while running:
            [ready], _ = ray.wait(list(running), num_returns=1)
            cell = running.pop(ready)
            submit()  # before reporting: the freed CPU takes the next cell at once
            try:
                outcome = ray.get(ready)
            except RayError as err:
                outcome = _cell_name(cell), ("its Ray worker died (killed, out of memory, crashed "
                                             "in native code, or its node lost): "
                                             + describe_ray_error(err))
            yield outcome
    finally:
        # On an interrupt or an abandoned generator, stop the running cells: each stage resumes.
        for ref in running:
            ray.cancel(ref, force=True)
