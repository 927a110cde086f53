"""Commands that measure policies and tasks: ``eval`` (a checkpoint on tasks or a suite: success,
intervals, latency), ``certify`` (a memory task's certificate), ``probe`` (what a policy's memory
holds) and ``body-leak`` (whether the joint state gives a hidden fact away). Over
``aem_bench.checkpoint_eval``, ``aem_bench.evaluator``, ``aem_bench.certify``, ``aem_bench.probe``
and ``aem_bench.leaks``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aem_bench.cli.common import (
    DEFAULT_TASK,
    add_backend_arguments,
    add_command,
    check_at_least,
    check_backend,
    check_checkpoint,
    check_input_file,
    check_output,
    check_task_list,
    check_tasks,
    print_json,
)
from aem_bench.errors import UsageError, bad_value
from aem_bench.progress import progress_bar
from aem_bench.seeds import EVAL_SEED_START


def _eval_tasks(args) -> list[str]:
    """The task ids of ``--task`` or of ``--suite``/``--variant``."""
    from aem_bench.registration import current_tasks

    if args.task and args.suite:
        raise UsageError("--suite", "give --task or --suite, not both")
    if args.variant and not args.suite:
        raise UsageError("--variant", "applies to --suite; name a variant's ids with --task")
    if not args.suite:
        tasks = args.task or [DEFAULT_TASK]
        check_tasks("--task", tasks)
        if twice := sorted({task for task in tasks if tasks.count(task) > 1}):
            raise UsageError("--task", f"{', '.join(twice)} given twice")
        return tasks
    suites = {"manipulation": lambda spec: spec.memory is None,
              "memory": lambda spec: spec.memory is not None, "all": lambda spec: True}
    variants = args.variant or ["clean"]
    return [env_id for env_id, spec in current_tasks().items()
            if suites[args.suite](spec) and spec.scene in variants]


def _eval_outputs(args, tasks: list[str]) -> list[tuple[str, Path, Path]]:
    """(task, results file, episode log) of each task, checked: writable, and no results file
    replaced without --overwrite."""
    if args.out and len(tasks) > 1:
        raise UsageError("--out", "names one results file: give one --task, or use "
                         "--results-dir")
    if args.log and len(tasks) > 1:
        raise UsageError("--log", "names one task's episode log: give one --task (each task's "
                         "log is written beside its results file)")
    if args.out and args.results_dir:
        raise UsageError("--results-dir", "--out names the results file: give one of them")
    results_dir = Path(args.results_dir or Path(args.policy) / "eval")
    outputs = []
    for task in tasks:
        stem = f"{task.replace('/', '_')}_{args.episodes}ep_seed{args.seed}"
        out = Path(args.out) if args.out else results_dir / f"{stem}.json"
        log = Path(args.log) if args.log else out.with_suffix(".jsonl")
        check_output("--out" if args.out else "--results-dir", out, folder=False,
                      overwrite=args.overwrite)
        check_output("--log", log, folder=False)
        outputs.append((task, out, log))
    return outputs


def _check_logs_are_of(args, logs: list[Path]) -> None:
    """Episode logs to resume hold episodes of this very checkpoint (a retrained model under the
    same folder must not inherit the old one's episodes); the rest of the header the evaluator
    compares."""
    from aem_bench.evaluator import checkpoint_digest

    digest = None
    for log in logs:
        try:
            with open(log) as f:
                header = json.loads(f.readline())["header"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # none, or damaged: the evaluator names what is wrong
        digest = digest or checkpoint_digest(args.policy)
        if not isinstance(header, dict) or header.get("checkpoint_digest") != digest:
            raise UsageError("--log" if args.log else "--policy", f"{log} holds episodes of "
                             f"another checkpoint than {args.policy}; pass --overwrite to "
                             "evaluate afresh, or another --log")


def cmd_eval(args) -> int:
    from aem_bench.checkpoint_eval import evaluate_checkpoint, load_for_eval

    outputs = _check_eval_args(args)
    policy = load_for_eval(args.policy, args.threads)  # loaded once, for every task
    _check_policy_reads(args, policy, [task for task, _, _ in outputs])
    if args.overwrite:  # a fresh evaluation: no episode of the old one kept
        for _, _, log in outputs:
            log.unlink(missing_ok=True)
    reports = []
    for task, out, log in outputs:
        report = evaluate_checkpoint(
            args.policy, task, args.episodes, args.seed, name=args.name, threads=args.threads,
            workers=args.workers, policy=policy, progress=not args.json, log=log,
            video_dir=args.video, video_format=args.video_format,
            video_episodes=args.video_seed or args.video_episodes, backend=args.backend,
            address=args.address)
        if write_result(report, out, log, args.json, args.interval):
            reports.append(report)
    if len(reports) > 1:
        _write_aggregate(reports, _aggregate_file(args), args.json)
    return 0 if len(reports) == len(outputs) else 1


def _check_eval_args(args) -> list[tuple[str, Path, Path]]:
    """(task, results file, episode log) of each task, every flag checked."""
    tasks = _eval_tasks(args)
    check_checkpoint("--policy", args.policy)
    check_at_least(args, 1, "episodes", "workers", "threads", "video_episodes")
    check_at_least(args, 0, "seed")
    for seed in args.video_seed or []:
        if seed < 0:
            raise bad_value("--video-seed", seed, "a seed of at least 0")
    if args.video_seed and not args.video:
        raise UsageError("--video-seed", "applies with --video DIR")
    check_backend(args)
    outputs = _eval_outputs(args, tasks)
    if args.video:
        check_output("--video", args.video, folder=True)
    if not args.overwrite:
        _check_logs_are_of(args, [log for _, _, log in outputs])
    return outputs


def _check_policy_reads(args, policy, tasks: list[str]) -> None:
    """A policy that reads a memory task's oracle or fact runs on memory tasks only."""
    from aem_bench.checkpoint_eval import env_kwargs_for
    from aem_bench.registration import TASKS

    if env_kwargs_for(policy.config).get("obs_mode") == "rgb+oracle":
        for task in tasks:
            if TASKS[task].memory is None:
                raise UsageError("--suite" if args.suite else "--task", f"{task} is not a memory "
                                 f"task, and {args.policy} reads a memory task's oracle or fact")


def _aggregate_file(args) -> Path:
    """In a folder of its own: the results folder holds only results files (the leaderboard reads
    every *.json there)."""
    results_dir = Path(args.results_dir or Path(args.policy) / "eval")
    label = f"{args.suite}-{'-'.join(args.variant or ['clean'])}" if args.suite else "tasks"
    return results_dir / "aggregates" / f"{label}_{args.episodes}ep_seed{args.seed}.json"


def write_result(report, out: Path, log: Path, as_json: bool,
                 interval_method: str = "wilson") -> bool:
    """Write an evaluation's results file and say what it holds, unless every episode errored:
    then it is not a result (0% of nothing that ran), nothing is written, and False."""
    from aem_bench.evaluator import write_report

    task = report.task
    errors = [record.error for record in report.records if record.error is not None]
    if len(errors) == len(report.records):
        print(f"aem-bench eval: error: {task}: all {len(errors)} episodes errored, the "
              f"first with: {errors[0]}; no results file written (the episodes are in "
              f"{log})", file=sys.stderr)
        return False
    if errors:
        print(f"aem-bench eval: warning: {task}: {len(errors)} of {len(report.records)} "
              f"episodes errored (counted as failures), the first with: {errors[0]}",
              file=sys.stderr)
    summary = report.summary()
    write_report(report, out)
    interval = _success_interval(summary, interval_method)
    if as_json:
        print_json({**summary, "interval": interval, "results_file": str(out),
                    "episode_log": str(log)})
        return True
    lo, hi = interval["ci95"]
    encoder = summary["encoder_latency_ms"]["median"]
    print(f"{task}: success {100 * summary['success_rate']:.1f}% "
          f"(95% {interval['method'].title()} CI {100 * lo:.1f}-{100 * hi:.1f}) "
          f"over {summary['episodes']} episodes; "
          f"policy latency median {summary['latency_ms']['median']:.1f} ms, "
          f"p95 {summary['latency_ms']['p95']:.1f} ms"
          + (f", encoder {encoder:.1f} ms" if encoder is not None else "")
          + f"; peak memory {summary['peak_rss_mb']:.0f} MB; "
          f"{summary['episodes_per_hour']:.0f} episodes/hour/worker; written to {out}")
    return True


def _success_interval(summary: dict, method: str) -> dict:
    """The 95% interval of a summary's success rate that ``--interval`` asks for. The results
    file keeps Wilson's (``success_ci95``), the one the leaderboard compares across files."""
    from aem_bench.stats import binomial_interval

    successes, episodes = summary["successes"], summary["episodes"]
    return {"method": method, "ci95": list(binomial_interval(successes, episodes, 0.95, method))}


def _write_aggregate(reports, path: Path, as_json: bool) -> None:
    """Success across the tasks: mean and IQM with stratified-bootstrap intervals (rliable)."""
    from aem_bench.stats import aggregate_success

    aggregate = {"policy": reports[0].policy,
                 **aggregate_success([report.to_dict() for report in reports])}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(aggregate, indent=2) + "\n")
    if as_json:
        print_json({**aggregate, "aggregate_file": str(path)})
        return
    print(f"across {len(aggregate['tasks'])} tasks: mean success "
          f"{100 * aggregate['mean']:.1f}% (95% CI {100 * aggregate['mean_ci95'][0]:.1f}-"
          f"{100 * aggregate['mean_ci95'][1]:.1f}), IQM {100 * aggregate['iqm']:.1f}% "
          f"({100 * aggregate['iqm_ci95'][0]:.1f}-{100 * aggregate['iqm_ci95'][1]:.1f}); "
          f"written to {path}")


def cmd_certify(args) -> int:
    from aem_bench.certify import (
        CERTIFICATE_NAME,
        CertificateBudget,
        certificates_file,
        certify,
        describe_certificate,
        write_certificate,
    )

    out, budget_args = _check_certify_args(args)
    record = certificates_file() if args.record else None
    if args.from_results:
        entry = write_certificate(_certificate_from_results(args), out, record)
    else:
        fields = {"episodes": "eval_episodes"}  # the flag's name -> the budget's field
        budget = CertificateBudget(**{fields.get(name, name): getattr(args, name)
                                      for name in budget_args})
        entry = certify(args.task, out, budget, progress=not args.json, record=record)
    if args.json:
        print_json(entry)
        return 0
    print(f"{describe_certificate(entry)}; written to {Path(out) / CERTIFICATE_NAME}"
          + (f" and recorded in {record}" if record else ""))
    return 0


def _check_certify_args(args) -> tuple[Path, list[str]]:
    """The output folder and the budget flags given, checked."""
    from aem_bench.certify import CERTIFICATE_NAME, certificates_file, load_certificates
    from aem_bench.registration import TASKS
    from aem_bench.sim.tabletop import MIN_CAMERA_SIDE

    check_tasks("--task", [args.task], scene="clean")
    if TASKS[args.task].memory is None:
        raise bad_value("--task", args.task, "a memory task (`aem-bench tasks --memory`)")
    budget_args = [name for name in ("demos", "train_steps", "episodes", "camera", "threads")
                   if getattr(args, name) is not None]
    check_at_least(args, 1, *budget_args)
    check_at_least(args, MIN_CAMERA_SIDE, "camera")
    out = args.out or Path("runs/certify") / args.task.split("/")[-1]
    check_output("--out", out, folder=True)
    # The folder's demos, checkpoints and certificate are all of one run.
    if not args.overwrite and any((out / name).exists() for name in (
            CERTIFICATE_NAME, "demos.h5", "with_oracle", "without_oracle")):
        raise UsageError("--out", f"{out} holds a certification run; pass --overwrite to "
                         "replace it")
    if args.record:
        check_output("--record", certificates_file(), folder=False)
        load_certificates()  # a damaged table is named before any work, not after it
    return out, budget_args


def _certificate_from_results(args) -> dict:
    from aem_bench.certify import certificate_from_results
    from aem_bench.leaderboard.results import load_result

    for name in ("demos", "train_steps", "episodes", "camera", "threads"):
        if getattr(args, name) is not None:
            raise UsageError(f"--{name.replace('_', '-')}", "sets the training of a certificate "
                             "run; --from-results takes the budget the results were made with")
    for path in args.from_results:
        check_input_file("--from-results", path)
    # The leaderboard's reader: a file not JSON, cut short or off its schema is named.
    results = [load_result(path) for path in args.from_results]
    return certificate_from_results(args.task, *results, command=args.command_line,
                                    sources=tuple(map(str, args.from_results)))


def cmd_probe(args) -> int:
    import torch

    from aem_bench.probe import probe, probe_table, write_probe

    check_checkpoint("--policy", args.policy, pretraining=True)
    check_input_file("--demos", args.demos)
    check_at_least(args, 2, "folds")
    check_at_least(args, 1, "threads")
    check_at_least(args, 0, "seed")
    check_output("--out", args.out, folder=True)
    torch.set_num_threads(args.threads)
    result = probe(args.policy, args.demos, folds=args.folds, seed=args.seed,
                   progress=not args.json, command=args.command_line)
    path = write_probe(result, args.out)
    if args.json:
        print_json({**result, "probe_file": str(path)})
        return 0
    print(f"{result['task']}: {result['memory']} memory of {args.policy}, {result['episodes']} "
          f"episodes, {result['fact_values']} values of the hidden fact (the commonest "
          f"{100 * result['majority_rate']:.0f}%)")
    print(f"the result: {result['probed']}")
    print(probe_table(result))
    print(f"written to {path}")
    return 0


def cmd_body_leak(args) -> int:
    from aem_bench.leaks import LEAK_RULE, leak_checks, leak_table, pooled_table
    from aem_bench.registration import current_tasks

    _check_body_leak_args(args)
    ids = args.tasks or [env_id for env_id, spec in current_tasks().items()
                         if spec.memory is not None and spec.scene == "clean"]
    results = []
    what = list(dict.fromkeys(args.what))  # each once, in the order given
    for env_id in progress_bar(ids, desc="leak check", unit="task", disable=args.json):
        results += leak_checks(env_id, what, episodes=args.episodes, first_seed=args.first_seed,
                               folds=args.folds, seed=args.seed, resolution=args.resolution)
        if args.out:  # written after every task: an interrupted run keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(leak_table(results, "github" if args.markdown else "simple"))
    if any("pooled" in result for result in results):
        print("\n" + pooled_table(results, "github" if args.markdown else "simple"))
    print(f"\nrule: {LEAK_RULE}")
    return 0


def _check_body_leak_args(args) -> None:
    from aem_bench.registration import TASKS

    check_task_list("--tasks", args.tasks)
    if args.tasks is not None:
        for env_id in args.tasks:
            if TASKS[env_id].memory is None:
                raise bad_value("--tasks", env_id, "a memory task (`aem-bench tasks --memory`)")
    check_at_least(args, 2, "folds")
    check_at_least(args, 0, "seed", "first_seed")
    if args.resolution is not None and not args.resolution > 0:
        raise bad_value("--resolution", args.resolution, "a positive step")
    if args.episodes < 2 * args.folds:
        raise bad_value("--episodes", args.episodes, f"at least 2 * --folds = {2 * args.folds}")
    if args.out:
        check_output("--out", args.out, folder=False, overwrite=args.overwrite)


def add_commands(sub) -> None:
    from aem_bench.stats import INTERVALS

    p = add_command(sub, "eval", cmd_eval,
                    "evaluate a checkpoint: success rate, CI, latency",
                    "aem-bench eval --policy runs/shell/sf-dp --task AEM/ShellGame-v0")
    p.add_argument("--policy", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--task", action="append", help=f"task id, repeatable (default {DEFAULT_TASK})")
    p.add_argument("--suite", choices=["manipulation", "memory", "all"],
                   help="every task of a suite instead of --task")
    p.add_argument("--variant", action="append", choices=["clean", "cluttered", "randomized"],
                   help="with --suite: scene variants, repeatable (default clean)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=EVAL_SEED_START,
                   help="first evaluation seed (demonstrations use seeds from 0)")
    p.add_argument("--out", help="results JSON of one task (default: RESULTS_DIR/TASK_...json)")
    p.add_argument("--results-dir", help="where results files go (default CHECKPOINT/eval)")
    p.add_argument("--overwrite", action="store_true", help="replace existing results files "
                   "and start their episode logs afresh (without it, an existing results file "
                   "is refused and a log of the same checkpoint and settings resumed)")
    p.add_argument("--name", help="policy name shown in the leaderboard")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the policy")
    p.add_argument("--workers", type=int, default=1,
                   help="parallel episode processes (or Ray actors with --backend ray)")
    add_backend_arguments(p, "episodes")
    p.add_argument("--log", help="episode log (JSONL) to append to and resume from "
                   "(default: the results file's name with .jsonl)")
    p.add_argument("--video", metavar="DIR", help="write rollout videos to DIR")
    p.add_argument("--video-episodes", type=int, default=1,
                   help="with --video: how many episodes, the first ones (default 1)")
    p.add_argument("--video-seed", type=int, action="append",
                   help="with --video: the episode with this seed instead, repeatable")
    p.add_argument("--video-format", choices=["gif", "mp4"], default="gif")
    p.add_argument("--interval", choices=list(INTERVALS), default="wilson",
                   help="the success rate's 95%% interval to print: Wilson's (default) or the "
                   "exact Clopper-Pearson; the results file keeps Wilson's, which the leaderboard "
                   "compares")
    p.add_argument("--json", action="store_true")

    p = add_command(sub, "certify", cmd_certify,
                    "measure a memory task's certificate (oracle vs none)",
                    "aem-bench certify --task AEM/ShellGame-v0")
    p.add_argument("--task", required=True)
    p.add_argument("--out", type=Path, help="work directory; the certificate is written to "
                   "OUT/certificate.json (default runs/certify/TASK)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--record", action="store_true", help="also record the certificate in the "
                   "package's tasks/memory_certificates.json (for maintainers)")
    p.add_argument("--demos", type=int, help="demonstrations (default 50)")
    p.add_argument("--train-steps", type=int, help="training steps (default 2000)")
    p.add_argument("--episodes", type=int, help="evaluation episodes per policy (default 100)")
    p.add_argument("--camera", type=int, help="square camera side, pixels (default 64)")
    p.add_argument("--threads", type=int, help="torch threads (default 1)")
    p.add_argument("--from-results", nargs=2, type=Path, metavar=("WITHOUT", "WITH"),
                   help="no training: the certificate of two results files already made (e.g. "
                   "a sweep's singleframe-dp and singleframe-dp-with-oracle cells), without and "
                   "with the oracle")
    p.add_argument("--json", action="store_true")

    p = add_command(sub, "probe", cmd_probe,
                    "does a policy's memory hold a memory task's hidden fact?",
                    "aem-bench probe --policy runs/shell/gru-dp --demos runs/shell/demos.h5",
                    description="does a policy's memory hold the hidden fact? linear probes at "
                    "the cue, midway and the decision step")
    p.add_argument("--policy", type=Path, required=True,
                   help="checkpoint of a policy with a memory (gru-*, aem-*, framestack-*)")
    p.add_argument("--demos", type=Path, required=True,
                   help="a memory task's demonstrations at the policy's camera size")
    p.add_argument("--out", type=Path, default=Path("leaderboard/probes"),
                   help="folder of the probe's JSON (one file per task and checkpoint)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds over episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", action="store_true")

    p = add_command(sub, "body-leak", cmd_body_leak,
                    "do the joint state or the scene give a memory task's hidden fact away?",
                    "aem-bench body-leak --tasks AEM/ShellGame-v0 --episodes 100 --what qpos scene",
                    description="do the joint state or the scene tell a memory task's hidden "
                    "fact once the cue is gone? a linear probe on expert episodes")
    p.add_argument("--tasks", nargs="*", help="memory task ids (default: the memory suite's "
                   "clean tasks)")
    p.add_argument("--episodes", type=int, default=100, help="successful expert episodes per task")
    p.add_argument("--what", nargs="+", choices=["qpos", "scene"], default=["qpos"],
                   help="what is probed: the joint state (qpos, default), the scene (the state "
                   "observation's object poses), or both, on the same expert episodes")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds over episodes")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds' shuffle")
    p.add_argument("--resolution", type=float, help="round every probed value to this step "
                   "first (rad for the joints), as a sensor of that resolution would read it "
                   "(default: the float32 values as they are)")
    p.add_argument("--out", help="the results' JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace --out")
    p.add_argument("--markdown", action="store_true", help="the table as Markdown")
    p.add_argument("--json", action="store_true")
