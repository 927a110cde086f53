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
    from aem_bench.registration import TASKS, measured_expert_success

    if args.write_metadata is not None:
        return _write_metadata(args)
    if args.measure and args.measure_blind:
        raise UsageError("--measure-blind", "give --measure or --measure-blind, not both "
                         "(--measure --pairs N adds the blind-replay rate to the expert's)")
    if args.measure:
        return _measure_experts(args)
    if args.measure_blind:
        for name, value in (("--episodes", args.episodes), ("--record", args.record)):
            if value is not None and value is not False:
                raise UsageError(name, "applies with --measure, not --measure-blind")
        return _measure_blind(args)
    for name, value in (("--ids", args.ids), ("--out", args.out), ("--overwrite", args.overwrite),
                        ("--pairs", args.pairs)):
        if value is not None and value is not False:  # 0 too: any value given
            raise UsageError(name, "applies with --measure or --measure-blind")
    for name, value in (("--episodes", args.episodes), ("--record", args.record)):
        if value is not None and value is not False:
            raise UsageError(name, "applies with --measure")
    from aem_bench.certify import VERDICT_RULE, load_certificates

    measured = measured_expert_success()
    certificates = load_certificates()
    rows = []
    # Every registered id; the memory suite's view leaves out versions a newer one supersedes.
    for spec in TASKS.values():
        if args.memory and (spec.memory is None or spec.superseded_by is not None):
            continue
        expert = measured.get(spec.env_id)
        rows.append({
            "certificate": certificates.get(spec.env_id),
            "id": spec.env_id, "scene": spec.scene, "arms": spec.arms,
            "skills": list(spec.skills), "memory": spec.memory, "chance": spec.chance,
            "max_episode_steps": spec.max_episode_steps,
            "expert_success": (None if expert is None
                               else expert["successes"] / expert["episodes"]),
            "expert_episodes": None if expert is None else expert["episodes"],
            "description": spec.description,
            "superseded_by": spec.superseded_by,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from tabulate import tabulate

    table_format = "github" if args.markdown else "simple"

    def expert_cell(row):
        if row["expert_success"] is None:
            return "not measured"
        return f"{100 * row['expert_success']:.0f}% of {row['expert_episodes']}"

    def chance_cell(row):
        return "-" if row["chance"] is None else f"{100 * row['chance']:.0f}%"

    if args.memory:
        def rate_cell(certificate, name):
            if certificate is None:
                return "not measured"
            rate = certificate[name]
            return (f"{rate['successes']}/{rate['episodes']} "
                    f"({100 * rate['ci95'][0]:.0f}-{100 * rate['ci95'][1]:.0f}%)")

        def cue_cell(certificate):
            cue = certificate and certificate["cue_hidden_at"]
            return "-" if not cue else f"{cue['median']:g}"

        def guess_cell(certificate):
            # Entries recorded before the best fixed guess was computed say so.
            if certificate is None or "best_fixed_guess" not in certificate:
                return "not computed"
            return rate_cell(certificate, "best_fixed_guess")

        def verdict_cell(certificate):
            return "-" if certificate is None else certificate.get("verdict", "not computed")

        print(tabulate([[r["id"], r["memory"], chance_cell(r), cue_cell(r["certificate"]),
                         expert_cell(r), rate_cell(r["certificate"], "with_oracle"),
                         rate_cell(r["certificate"], "without_oracle"),
                         guess_cell(r["certificate"]), verdict_cell(r["certificate"])]
                        for r in rows if r["scene"] == "clean"],
                       headers=["id", "memory", "chance", "cue hidden at step", "expert",
                                "DP with oracle", "DP without oracle",
                                "best fixed guess, same seeds", "verdict"],
                       tablefmt=table_format))
        print(f"\nverdict: {VERDICT_RULE}")
        return 0
    print(tabulate([[r["id"], r["arms"], ", ".join(r["skills"]), r["memory"] or "-",
                     chance_cell(r), r["max_episode_steps"], expert_cell(r)] for r in rows],
                   headers=["id", "arms", "skills", "memory", "chance", "step limit",
                            "expert success"], tablefmt=table_format))
    return 0


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
    import gymnasium as gym

    from aem_bench.media import contact_sheet
    from aem_bench.registration import TASKS, VARIANT_SUFFIXES, current_tasks

    check_task_list("--tasks", args.tasks, scene="clean")
    if args.tasks is not None and args.memory:
        raise UsageError("--memory", "picks the tasks when --tasks does not: give one")
    check_at_least(args, 1, "size")
    check_at_least(args, 0, "seed")
    check_output("--out", args.out, folder=False)
    from PIL import Image

    if Path(args.out).suffix.lower() not in Image.registered_extensions():
        raise bad_value("--out", args.out, "an image file name, e.g. gallery.png")
    base_ids = args.tasks or sorted({spec.base_id for spec in current_tasks().values()
                                     if args.memory == (spec.memory is not None)})
    # Memory tasks get a fourth picture: the clean scene once the cue has left the frame.
    with_cue_hidden = any(TASKS[base_id].memory for base_id in base_ids)
    columns = list(VARIANT_SUFFIXES) + (["clean, cue hidden"] if with_cue_hidden else [])
    rows = []
    for base_id in progress_bar(base_ids, desc="gallery", unit="task"):
        row = []
        for scene in VARIANT_SUFFIXES:
            env = gym.make(base_id, scene=scene, camera_size=(args.size, args.size))
            obs, _ = env.reset(seed=args.seed)
            row.append(obs["rgb"])
            if scene == "clean" and with_cue_hidden:
                cue_hidden = _first_frame_without_cue(env, obs)
            env.close()
        rows.append(row + ([cue_hidden] if with_cue_hidden else []))
    sheet = contact_sheet(rows, [i.removeprefix("AEM/").removesuffix("-v0") for i in base_ids],
                          columns)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"{len(base_ids)} tasks x {len(columns)} pictures written to {args.out}")
    return 0


def _first_frame_without_cue(env, obs):
    """Play the expert until the memory task hides its cue; that frame (blank if never)."""
    task = env.unwrapped
    if not task.task_spec.memory:
        return obs["rgb"] * 0
    for action in task.expert():
        obs, *_ = env.step(action)
        if task.cue_hidden_at is not None:
            return obs["rgb"]
    return obs["rgb"] * 0


def cmd_expert(args) -> int:
    from aem_bench.expert import expert_rollouts

    check_tasks("--task", [args.task])
    check_at_least(args, 1, "episodes", "video_size")
    check_at_least(args, 0, "seed")
    if args.video:
        check_output("--video", args.video, folder=True)
    seeds = range(args.seed, args.seed + args.episodes)
    results = []
    bar = progress_bar(expert_rollouts(args.task, seeds), total=args.episodes, desc="expert",
                       disable=args.json, unit="ep")
    for result in bar:
        results.append(result)
        bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
    successes = sum(r.success for r in results)
    summary = {
        "task": args.task,
        "episodes": len(results),
        "successes": successes,
        "success_rate": successes / len(results),
        "failed_seeds": [r.seed for r in results if not r.success],
        "mean_steps": sum(r.steps for r in results) / len(results),
    }
    if args.video:
        _write_videos(args, results)
    if args.json:
        print_json(summary)
    else:
        print(f"{args.task}: expert solved {successes}/{len(results)} seeds "
              f"({100 * summary['success_rate']:.1f}%); failed seeds {summary['failed_seeds']}")
    return 0


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
