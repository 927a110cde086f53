"""Commands about the tasks and their experts: ``tasks`` (metadata, measured expert rates,
blind replays, ``--write-metadata``), ``gallery`` (a contact sheet of every scene), ``expert``
(an expert's success rate, videos) and ``demos`` (recording demonstrations). Over
``aem_bench.registration``, ``aem_bench.expert``, ``aem_bench.media`` and ``aem_bench.certify``
(the memory certificates ``tasks --memory`` shows).
"""

from __future__ import annotations

import json
from pathlib import Path

from aem_bench.cli.common import (
    DEFAULT_TASK,
    add_command,
    check_at_least,
    check_output,
    check_task_list,
    check_tasks,
    print_json,
)
from aem_bench.errors import UsageError, bad_value
from aem_bench.progress import progress_bar, progress_write

# `tasks --measure-blind`: the expert's actions come from seeds 0 on, replayed from this seed on.
BLIND_REPLAY_SEED = 1000
BLIND_REPLAY_LIMIT = 0.10  # a blind replay succeeding more often says the layout barely varies


def cmd_tasks(args) -> int:
    from aem_bench.task_table import format_memory_table, format_task_table, task_rows

    if args.write_metadata is not None:
        return _write_metadata(args)
    _check_tasks_mode(args)
    if args.measure:
        return _measure_experts(args)
    if args.measure_blind:
        return _measure_blind(args)
    rows = task_rows(memory_only=args.memory)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.memory:
        print(format_memory_table(rows, markdown=args.markdown))
    else:
        print(format_task_table(rows, markdown=args.markdown))
    return 0


def _check_tasks_mode(args) -> None:
    """Each flag of `tasks` applies with --measure, --measure-blind or neither: say which."""
    if args.measure and args.measure_blind:
        raise UsageError("--measure-blind", "give --measure or --measure-blind, not both "
                         "(--measure --pairs N adds the blind-replay rate to the expert's)")
    if args.measure:
        return
    if args.measure_blind:
        _reject_given(args, "applies with --measure, not --measure-blind", "episodes", "record")
        return
    _reject_given(args, "applies with --measure or --measure-blind", "ids", "out", "overwrite",
                  "pairs")
    _reject_given(args, "applies with --measure", "episodes", "record")


def _reject_given(args, reason: str, *names: str) -> None:
    """UsageError for the first of ``names`` given any value (0 too)."""
    for name in names:
        if getattr(args, name) is not None and getattr(args, name) is not False:
            raise UsageError(f"--{name.replace('_', '-')}", reason)


def _write_metadata(args) -> int:
    """Every task's metadata, from the task modules' declarations, to the file that ``import
    aem_bench`` registers the tasks from (or another)."""
    from aem_bench.tasks import METADATA_FILE, write_metadata

    for name in ("memory", "json", "markdown", "measure", "measure_blind", "episodes", "ids", "out",
                 "overwrite", "record", "pairs"):
        if getattr(args, name) not in (None, False):
            raise UsageError(f"--{name.replace('_', '-')}", "does not apply with --write-metadata")
    path = METADATA_FILE if args.write_metadata is True else Path(args.write_metadata)
    check_output("--write-metadata", path, folder=False)
    print(f"wrote {write_metadata(path)}")
    return 0


def _measure_experts(args) -> int:
    """Run every task's expert (no rendering) and write the rates `aem-bench tasks` shows."""
    from aem_bench.evaluator import collect_provenance
    from aem_bench.expert import blind_replay_rate, expert_rollouts
    from aem_bench.registration import TASKS, expert_success_file, measured_expert_success

    check_task_list("--ids", args.ids)
    args.episodes = 100 if args.episodes is None else args.episodes
    check_at_least(args, 1, "episodes")
    _check_pairs(args)
    if not args.out and not args.record:
        raise UsageError("--measure", "name where the rates go: --out FILE.json, or --record "
                         f"to update the package's {expert_success_file().name}")
    if args.out:
        check_output("--out", args.out, folder=False, overwrite=args.overwrite)
    if args.record:
        check_output("--record", expert_success_file(), folder=False)
        measured_expert_success()  # a damaged table is named before any work, not after it
    machine = collect_provenance()["hardware"]
    measured = {}
    ids = args.ids or list(TASKS)
    for env_id in progress_bar(ids, desc="experts", unit="task"):
        results = list(expert_rollouts(env_id, range(args.episodes), obs_mode="state"))
        measured[env_id] = {
            "episodes": len(results),
            "successes": sum(r.success for r in results),
            "first_seed": 0,
            "failed_seeds": [r.seed for r in results if not r.success],
            "mean_steps": round(sum(r.steps for r in results) / len(results), 1),
            "machine": machine,
        }
        if args.pairs:
            measured[env_id]["blind_replay"] = blind_replay_rate(
                env_id, args.pairs, replay_seed=BLIND_REPLAY_SEED)
        # Written after every task: an interrupted run keeps what it measured.
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
        if args.record:  # merged: the table keeps the tasks not measured this time
            table = {**measured_expert_success(), env_id: measured[env_id]}
            expert_success_file().write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
        progress_write(f"{env_id}: {measured[env_id]['successes']}/{len(results)}")
    print("written to " + " and ".join(
        str(path) for path in (args.out, args.record and expert_success_file()) if path))
    return 0


def _check_pairs(args) -> None:
    check_at_least(args, 1, "pairs")
    most = BLIND_REPLAY_SEED // 2 - 10
    if args.pairs is not None and args.pairs > most:
        # The actions come from at most 2 * pairs + 20 seeds from 0; the replays start at
        # BLIND_REPLAY_SEED and must not land on a seed the actions came from.
        raise bad_value("--pairs", args.pairs, f"at most {most}")


def _measure_blind(args) -> int:
    """The expert's actions of one seed replayed blind on another: how often they succeed."""
    from tabulate import tabulate

    from aem_bench.evaluator import collect_provenance
    from aem_bench.expert import blind_replay_rate
    from aem_bench.registration import current_tasks

    check_task_list("--ids", args.ids)
    args.pairs = 20 if args.pairs is None else args.pairs
    _check_pairs(args)
    if args.out:
        check_output("--out", args.out, folder=False, overwrite=args.overwrite)
    ids = args.ids or [env_id for env_id, spec in current_tasks().items()
                       if spec.scene == "clean"]
    machine = collect_provenance()["hardware"]
    measured = {}
    for env_id in progress_bar(ids, desc="blind replay", unit="task"):
        measured[env_id] = {**blind_replay_rate(env_id, args.pairs, replay_seed=BLIND_REPLAY_SEED),
                            "machine": machine}
        if args.out:  # written after every task: an interrupted run keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
    if args.json:
        print(json.dumps(measured, indent=2, sort_keys=True))
        return 0
    rows = [[env_id, f"{r['successes']}/{r['pairs']}",
             f"{100 * r['ci95'][0]:.0f}-{100 * r['ci95'][1]:.0f}%",
             "above 10%" if r["rate"] > BLIND_REPLAY_LIMIT else ""]
            for env_id, r in measured.items()]
    print(tabulate(rows, headers=["id", "blind replays that succeed", "95% interval", ""],
                   tablefmt="github" if args.markdown else "simple"))
    return 0


def cmd_gallery(args) -> int:
    from aem_bench.gallery import write_gallery
    from aem_bench.registration import current_tasks

    _check_gallery_args(args)
    base_ids = args.tasks or sorted({spec.base_id for spec in current_tasks().values()
                                     if args.memory == (spec.memory is not None)})
    columns = write_gallery(base_ids, args.out, size=args.size, seed=args.seed)
    print(f"{len(base_ids)} tasks x {columns} pictures written to {args.out}")
    return 0


def _check_gallery_args(args) -> None:
    check_task_list("--tasks", args.tasks, scene="clean")
    if args.tasks is not None and args.memory:
        raise UsageError("--memory", "picks the tasks when --tasks does not: give one")
    check_at_least(args, 1, "size")
    check_at_least(args, 0, "seed")
    check_output("--out", args.out, folder=False)
    from PIL import Image

    if Path(args.out).suffix.lower() not in Image.registered_extensions():
        raise bad_value("--out", args.out, "an image file name, e.g. gallery.png")


def cmd_expert(args) -> int:
    from aem_bench.expert import expert_rollouts, expert_summary

    _check_expert_args(args)
    seeds = range(args.seed, args.seed + args.episodes)
    results = []
    bar = progress_bar(expert_rollouts(args.task, seeds), total=args.episodes, desc="expert",
                       disable=args.json, unit="ep")
    for result in bar:
        results.append(result)
        bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
    summary = expert_summary(args.task, results)
    if args.video:
        _write_videos(args, results)
    if args.json:
        print_json(summary)
    else:
        print(f"{args.task}: expert solved {summary['successes']}/{len(results)} seeds "
              f"({100 * summary['success_rate']:.1f}%); failed seeds {summary['failed_seeds']}")
    return 0


def _check_expert_args(args) -> None:
    check_tasks("--task", [args.task])
    check_at_least(args, 1, "episodes", "video_size")
    check_at_least(args, 0, "seed")
    if args.video:
        check_output("--video", args.video, folder=True)


def _write_videos(args, results) -> None:
    """Replay the expert on each seed with a larger camera and write one GIF per episode."""
    from aem_bench.expert import run_expert_frames
    from aem_bench.media import write_video

    for result in results:
        frames = run_expert_frames(args.task, result.seed, size=args.video_size)
        path = Path(args.video) / f"{args.task.split('/')[-1]}_seed{result.seed}.gif"
        write_video(frames, path)
        print(f"video of seed {result.seed} ({len(frames)} frames) written to {path}")


def cmd_demos(args) -> int:
    from aem_bench.expert import record_demos
    from aem_bench.registration import TASKS
    from aem_bench.sim.tabletop import MIN_CAMERA_SIDE

    check_tasks("--task", [args.task])
    if args.obs_mode == "rgb+oracle" and TASKS[args.task].memory is None:
        raise UsageError("--obs-mode", f"rgb+oracle records a memory task's oracle; {args.task} "
                         "is not a memory task (`aem-bench tasks --memory`)")
    check_at_least(args, 1, "episodes")
    check_at_least(args, MIN_CAMERA_SIDE, "camera")
    check_at_least(args, 0, "seed")
    check_output("--out", args.out, folder=False, overwrite=args.overwrite)
    env_kwargs = {} if args.obs_mode == "rgb" else {"obs_mode": args.obs_mode}
    if args.camera != 128:
        env_kwargs["camera_size"] = (args.camera, args.camera)
    tried = record_demos(args.task, args.episodes, args.out, seed=args.seed, **env_kwargs)
    print(f"wrote {args.episodes} successful episodes ({tried} seeds tried) to {args.out}")
    return 0


def add_commands(sub) -> None:
    p = add_command(sub, "tasks", cmd_tasks,
                    "list the registered tasks with their metadata",
                    "aem-bench tasks --memory")
    p.add_argument("--memory", action="store_true", help="only the memory (non-Markovian) tasks")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true", help="tables as Markdown (for the README)")
    p.add_argument("--measure", action="store_true",
                   help="run every expert and write the success rates to --out (and/or --record)")
    p.add_argument("--episodes", type=int, help="with --measure: seeds per task (default 100)")
    p.add_argument("--ids", nargs="*", help="with --measure(-blind): only these ids")
    p.add_argument("--out", help="with --measure(-blind): the rates' JSON file")
    p.add_argument("--overwrite", action="store_true",
                   help="with --measure(-blind): replace --out")
    p.add_argument("--record", action="store_true", help="with --measure: also record the rates "
                   "in the package's tasks/expert_success.json (for maintainers)")
    p.add_argument("--measure-blind", action="store_true",
                   help="replay the expert's actions of seeds 0, 1, ... open-loop on seeds 1000, "
                   "1001, ... and print how often they succeed (clean tasks, or --ids)")
    p.add_argument("--pairs", type=int, help="with --measure-blind: seed pairs per task (default "
                   "20); with --measure: also measure the blind-replay rate on this many pairs")
    p.add_argument("--write-metadata", nargs="?", const=True, metavar="FILE",
                   help="write every task's metadata, from the task modules, to the package's "
                   "tasks/registry.json (or FILE), which registers the tasks and feeds the "
                   "leaderboard; after adding or changing a task (for maintainers)")

    p = add_command(sub, "gallery", cmd_gallery,
                    "contact sheet (PNG) of every task in every scene",
                    "aem-bench gallery --memory --out docs/gallery_memory.png")
    p.add_argument("--out", default="docs/gallery.png")
    p.add_argument("--size", type=int, default=128, help="tile size (pixels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory", action="store_true", help="the memory suite instead")
    p.add_argument("--tasks", nargs="*", help="only these (clean) ids")

    p = add_command(sub, "expert", cmd_expert,
                    "success rate of a task's scripted expert",
                    "aem-bench expert --task AEM/ShellGame-v0 --episodes 20")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="first seed (seeds are consecutive)")
    p.add_argument("--json", action="store_true", help="print a JSON summary only")
    p.add_argument("--video", metavar="DIR", help="also write a GIF of each episode to DIR")
    p.add_argument("--video-size", type=int, default=256, help="video frame size (pixels)")

    p = add_command(sub, "demos", cmd_demos,
                    "record the expert's successful episodes to HDF5",
                    "aem-bench demos --task AEM/ShellGame-v0 --camera 64 --out runs/shell/demos.h5")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true", help="replace the file --out if it exists")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--obs-mode", default="rgb", choices=["rgb", "rgb+oracle"],
                   help="rgb+oracle also records a memory task's oracle and hidden fact")
    p.add_argument("--camera", type=int, default=128,
                   help="square camera side (pixels); the memory certificates use 64")
