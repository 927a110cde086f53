"""Commands that end in a leaderboard: ``leaderboard`` (render results files), ``pipeline``
(demonstrations, training, evaluation and table on a small default), ``submit`` (an encoder under
the fixed protocol) and ``sweep`` (policy rows x tasks x scenes, cached and resumable). Over
``aem_bench.leaderboard``, ``aem_bench.submit``, ``aem_bench.sweep`` and, for the pipeline, the
functions the other commands run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aem_bench.cli.common import (
    DEFAULT_TASK,
    RESULTS_DIR,
    add_backend_arguments,
    add_command,
    add_protocol_arguments,
    check_at_least,
    check_backend,
    check_output,
    check_tasks,
)
from aem_bench.cli.evaluation import write_result
from aem_bench.errors import UsageError, bad_value
from aem_bench.seeds import EVAL_SEED_START


def cmd_leaderboard(args) -> int:
    from aem_bench.leaderboard.publish import write_leaderboard
    from aem_bench.recipe import get_protocol

    if Path(args.results).is_file():
        raise UsageError("--results", f"{args.results} is a file; expected a folder of results "
                         "files")
    if not Path(args.results).exists():
        raise UsageError("--results", f"{args.results}: no such folder")
    check_output("--out", args.out, folder=False)
    protocol = None if args.protocol == "any" else get_protocol(args.protocol)
    for path in write_leaderboard(args.results, args.out, protocol):
        print(f"wrote {path}")
    return 0


def cmd_pipeline(args) -> int:
    """Demonstrations -> training -> evaluation -> leaderboard table, on a small default."""
    from aem_bench.checkpoint_eval import evaluate_checkpoint
    from aem_bench.expert import record_demos
    from aem_bench.leaderboard.publish import write_leaderboard
    from aem_bench.policies.training import train

    run = _check_pipeline_args(args)
    started = time.perf_counter()
    _stage("demos", started)
    tried = record_demos(args.task, args.demos, run.demos, seed=0)
    print(f"wrote {args.demos} successful episodes ({tried} seeds tried) to {run.demos}")
    _stage("train", started)
    train(args.policy, run.demos, run.checkpoint, steps=args.train_steps,
          batch_size=args.batch_size, seed=0, command=args.command_line)
    print(f"checkpoint written to {run.checkpoint}")
    _stage("eval", started)
    report = evaluate_checkpoint(
        run.checkpoint, args.task, args.eval_episodes, EVAL_SEED_START,
        name=f"{args.policy} ({args.demos} demos, {args.train_steps} steps)", log=run.log,
        video_dir=run.videos, video_episodes=2)
    if not write_result(report, run.results_file, run.log, as_json=False):
        print("pipeline stopped at 'eval'", file=sys.stderr)
        return 1
    _stage("leaderboard", started)
    for path in write_leaderboard(run.results, run.out / "LEADERBOARD.md"):
        print(f"wrote {path}")
    print(f"\npipeline finished in {time.perf_counter() - started:.0f} s; outputs in {run.out}")
    return 0


def _stage(name: str, started: float) -> None:
    print(f"\n== {name} ({time.perf_counter() - started:.0f} s so far) ==", flush=True)


@dataclass(frozen=True)
class PipelineRun:
    """Where a pipeline run under ``out`` keeps each stage's output."""

    out: Path
    policy: str
    task: str

    @property
    def demos(self) -> Path:
        return self.out / "demos.h5"

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint"

    @property
    def results(self) -> Path:
        return self.out / "results"

    @property
    def videos(self) -> Path:
        return self.out / "videos"

    @property
    def results_file(self) -> Path:
        return self.results / f"{self.policy}_{self.task.replace('/', '_')}.json"

    @property
    def log(self) -> Path:
        return self.results_file.with_suffix(".jsonl")


def _check_pipeline_args(args) -> PipelineRun:
    """The run's folders, checked; with --overwrite, the old run's outputs removed."""
    import shutil

    from aem_bench.policies import POLICIES

    check_tasks("--task", [args.task])
    if args.policy not in POLICIES or args.policy.startswith("aem-"):  # aem needs a pretraining
        raise bad_value("--policy", args.policy, "a zoo policy that trains from scratch: "
                        + ", ".join(name for name in POLICIES if not name.startswith("aem-")))
    check_at_least(args, 1, "demos", "train_steps", "batch_size", "eval_episodes")
    run = PipelineRun(Path(args.out), args.policy, args.task)
    check_output("--out", run.out, folder=True)
    if not args.overwrite and any(path.exists() for path in (run.demos, run.checkpoint,
                                                             run.results)):
        raise UsageError("--out", f"{run.out} holds a pipeline run; pass --overwrite to replace "
                         "it")
    for path in (run.checkpoint, run.results, run.videos):  # nothing of the old run resumed
        shutil.rmtree(path, ignore_errors=True)
    return run


def cmd_submit(args) -> int:
    from aem_bench.policies.encoders.weights import MissingWeightsError
    from aem_bench.submit import get_protocol, submit

    protocol = get_protocol(args.protocol)
    options, cache = _check_submit_args(args, protocol)
    try:
        paths = submit(args.encoder, protocol, cache, encoder_options=options,
                       results_dir=args.results_dir, command=args.command_line)
    except MissingWeightsError as err:
        # The hint is the training command's (--config); submit takes the options themselves.
        raise MissingWeightsError(str(err).replace(
            """in encoder_options (e.g. --config '{"encoder_options": {"weights": "/path/to/file"}}'""",
            """in the encoder's options (e.g. --options '{"weights": "/path/to/file"}'""")) from None
    for path in paths:
        print(f"results written to {path}")
    if protocol.name != "standard":
        print(f"note: the '{protocol.name}' protocol checks a submission's plumbing; "
              "leaderboard entries come from --protocol standard")
    return 0


def _check_submit_args(args, protocol) -> tuple[dict, Path]:
    """The encoder's options and the cache folder, every flag checked."""
    from aem_bench.policies.encoders import encoder_class

    if args.out is not None:  # a flag of earlier versions: say where its contents went
        raise UsageError("--out", "no longer taken: a submission's demonstrations, checkpoints "
                         "and episode logs are the sweep's, in --cache (default "
                         "runs/sweep/PROTOCOL), and its results files go to --results-dir")
    example = "a JSON object of the encoder's options, e.g. '{\"channels\": 32}'"
    try:
        options = json.loads(args.options) if args.options else {}
    except json.JSONDecodeError as err:
        raise bad_value("--options", args.options, f"{example} (not JSON: {err})") from None
    if not isinstance(options, dict):
        raise bad_value("--options", args.options, example)
    try:
        encoder_class(args.encoder)
    except UsageError as err:  # the zoo's unknown name
        raise UsageError("--encoder", err.message) from None
    if args.results_dir:
        check_output("--results-dir", args.results_dir, folder=True)
    return options, _checked_cache(args, protocol)


def _checked_cache(args, protocol) -> Path:
    """--cache, or the protocol's default cache that sweeps and submissions share."""
    from aem_bench.sweep import default_cache

    cache = args.cache or default_cache(protocol)
    check_output("--cache", cache, folder=True)
    return cache


def cmd_sweep(args) -> int:
    from aem_bench.sweep import Sweep, cells, run, status_table

    protocol, tasks, cache = _check_sweep_args(args)
    sweep = Sweep(protocol, Path(cache), Path(args.results_dir), command=args.command_line,
                  video_dir=args.video)
    todo = cells(protocol, args.rows, tasks, args.scenes)
    print(status_table(sweep, todo), flush=True)
    if args.dry_run:
        return 0
    started = time.perf_counter()
    errors = run(sweep, todo, workers=args.workers, backend=args.backend, address=args.address)
    print(f"\n{status_table(sweep, todo)}\n\nsweep ran for "
          f"{(time.perf_counter() - started) / 60:.1f} min")
    return 1 if errors else 0


def _check_sweep_args(args):
    """The protocol (with --demos applied), the tasks and the cache folder, every flag checked."""
    from aem_bench.recipe import get_protocol
    from aem_bench.registration import TASKS, VARIANT_SUFFIXES
    from aem_bench.sweep import ROWS

    protocol = get_protocol(args.protocol)
    if args.demos is not None:
        check_at_least(args, 1, "demos")
        protocol = protocol.with_demos(args.demos)
    unknown = [name for name in args.rows or () if name not in ROWS]
    if unknown:
        raise UsageError("--rows", f"unknown rows {unknown}; rows: {', '.join(sorted(ROWS))}")
    tasks = args.tasks or list(protocol.tasks)
    check_tasks("--tasks", tasks, scene="clean")
    unbudgeted = [task for task in tasks if protocol.budgets and task not in protocol.tasks]
    if unbudgeted:  # it would be trained at the protocol's defaults, not at a budget of its own
        raise UsageError("--tasks", f"{unbudgeted[0]} has no budget in the '{protocol.name}' "
                         f"protocol; its tasks: {', '.join(protocol.tasks)}")
    for scene in args.scenes or []:
        if scene not in VARIANT_SUFFIXES:
            raise bad_value("--scenes", scene, f"one of {', '.join(VARIANT_SUFFIXES)}")
    oracle_rows = [name for name in args.rows or () if ROWS[name].reads_oracle]
    no_oracle = [task for task in tasks if TASKS[task].memory is None]
    if oracle_rows and no_oracle:
        raise UsageError("--rows", f"{oracle_rows[0]} reads a memory task's oracle; "
                         f"{no_oracle[0]} is not a memory task")
    check_at_least(args, 1, "workers")
    check_output("--results-dir", args.results_dir, folder=True)
    cache = _checked_cache(args, protocol)
    if args.video:
        check_output("--video", args.video, folder=True)
    check_backend(args)
    if args.address:
        # A cluster's workers resolve a relative path in their own working directory.
        for argument, path in (("--cache", cache), ("--results-dir", args.results_dir),
                               ("--video", args.video)):
            if path is not None and not Path(path).is_absolute():
                raise UsageError(argument, f"{path} is relative; with --address give an "
                                 "absolute path that every node of the cluster reaches")
    return protocol, tasks, cache


def add_commands(sub) -> None:
    p = add_command(sub, "leaderboard", cmd_leaderboard,
                    "render results files: Markdown, a self-contained web page, plots",
                    "aem-bench leaderboard --results runs/demo/results --out runs/demo/README.md")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    from aem_bench.recipe import protocol_names

    p.add_argument("--protocol", default="standard", choices=[*protocol_names(), "any"],
                   help="the protocol whose results make the matrices (default standard; "
                   "'any': every result, the latest per policy and task)")
    p.add_argument("--out", type=Path, default=Path("leaderboard/README.md"),
                   help="the Markdown file; index.html and plots/ are written beside it")

    p = add_command(sub, "pipeline", cmd_pipeline,
                    "demos, training, evaluation and table on a small default",
                    "aem-bench pipeline --task AEM/HandoverBlock-v0 --out runs/demo")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--policy", default="singleframe-dp")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    add_protocol_arguments(p, {"demos": 10, "train_steps": 1500, "batch_size": 64,
                               "eval_episodes": 10})
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")

    p = add_command(sub, "submit", cmd_submit,
                    "run the fixed protocol for an encoder and write leaderboard results files",
                    "aem-bench submit --encoder tiny --protocol smoke")
    p.add_argument("--encoder", required=True,
                   help="a registered or installed encoder name, or package.module:Class")
    p.add_argument("--protocol", default="standard", choices=["standard", "smoke"],
                   help="standard: the leaderboard's, every task of both suites (10-40 "
                   "core-minutes per task); smoke: a minute, to check that the package works")
    p.add_argument("--options", help='JSON of the encoder\'s options, e.g. \'{"channels": 32}\'')
    _add_cache_argument(p, "; a submission's cells are sweep cells, trained once for both")
    p.add_argument("--results-dir", type=Path,
                   help="where results files go (default runs/submit/results)")
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)  # refused, saying what replaced it

    from aem_bench.recipe import protocol_names
    from aem_bench.sweep import MATRIX_ROWS

    p = add_command(sub, "sweep", cmd_sweep,
                    "policy rows x tasks x scenes under one protocol, every stage cached and "
                    "resumable",
                    "aem-bench sweep --protocol demo --tasks AEM/ShellGame-v0 --workers 2 --dry-run")
    p.add_argument("--protocol", default="certificate-budget", choices=protocol_names(),
                   help="certificate-budget: the memory suite at each task's certificate budget; "
                   "demo: what `make demo` runs")
    p.add_argument("--rows", nargs="+",
                   help="policy rows, on every task (default: the leaderboard matrix's rows of "
                   f"each task's suite: {'; '.join(f'{suite}: ' + ', '.join(rows) for suite, rows in MATRIX_ROWS.items())})")
    p.add_argument("--tasks", nargs="+", help="clean task ids (default: the protocol's)")
    p.add_argument("--scenes", nargs="+", help="scenes to evaluate in (default: the protocol's)")
    p.add_argument("--workers", type=int, default=1,
                   help="cells at once: processes, one core each (or Ray tasks of one CPU with "
                   "--backend ray)")
    add_backend_arguments(p, "cells", "; the workers share --cache through file locks, so "
                          "on a cluster of several machines --cache and --results-dir must be "
                          "absolute paths on storage that every node mounts")
    add_protocol_arguments(p, {"demos": None}, notes={
        "demos": "instead of the protocol's (a study of how many a policy needs); the protocol "
                 "is then named PROTOCOL-{N}demos"})
    _add_cache_argument(p)
    p.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"))
    p.add_argument("--video", type=Path,
                   help="write a GIF of each cell's first evaluation episode under VIDEO/ROW/")
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells, their state, the core-minutes they took so far and those left; run nothing")


def _add_cache_argument(parser, note: str = "") -> None:
    parser.add_argument("--cache", type=Path,
                        help="demonstrations, checkpoints, episode logs (default "
                        f"runs/sweep/PROTOCOL, shared by sweeps and submissions{note})")
