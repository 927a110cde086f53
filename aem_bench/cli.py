"""The ``aem-bench`` command line.

    aem-bench tasks       [--memory] [--json] [--measure]          tasks, metadata, certificates
                          [--measure-blind [--pairs N]]   expert actions replayed on other seeds
    aem-bench gallery     [--out FILE.png]                         contact sheet of every task
    aem-bench certify     --task ID                                a memory task's certificate
    aem-bench expert      --task ID --episodes N [--json] [--video DIR]   expert success rate
    aem-bench demos       --task ID --episodes N --out FILE.h5   record successful expert episodes
    aem-bench train       --policy NAME --demos FILE.h5 --out DIR
    aem-bench eval        --policy DIR (--task ID ... | --suite S [--variant V]) --episodes N
                          [--workers W] [--video DIR] [--interval clopper-pearson]
                          success, intervals, latency, memory
    aem-bench leaderboard [--results DIR] [--out FILE.md]
    aem-bench body-leak   [--tasks ID ...] [--episodes N] [--what qpos scene]
                          do the joint state or the scene after the cue tell the fact?
    aem-bench pipeline    --task ID --out DIR                      all of the above, small default
    aem-bench encoders    [--json]                  built-in and installed (entry-point) encoders
    aem-bench submit      --encoder REF [--protocol standard|smoke]   an encoder's leaderboard run
    aem-bench sweep       --protocol P [--rows ...] [--tasks ...] [--workers W] [--dry-run]
                          policy rows x tasks x scenes, every stage cached and resumable
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

# Before torch is imported: OpenMP workers that spin-wait at barriers stall badly (seconds per
# training step) when anything else, the CPU renderer included, wants the same cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from aem_bench.errors import UsageError, bad_value, closest
from aem_bench.progress import progress_bar, progress_write
from aem_bench.seeds import EVAL_SEED_START

DEFAULT_TASK = "AEM/HandoverBlock-v0"
# `tasks --measure-blind`: the expert's actions come from seeds 0 on, replayed from this seed on.
BLIND_REPLAY_SEED = 1000
BLIND_REPLAY_LIMIT = 0.10  # a blind replay succeeding more often says the layout barely varies
RESULTS_DIR = Path("leaderboard/results")


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=2))


# --- argument checks: each command checks all of its arguments before any work starts --------
def _check_tasks(argument: str, values, scene: str | None = None) -> None:
    """Each of ``values`` a registered task id (of ``scene``, if given)."""
    from aem_bench.registration import TASKS

    for value in values:
        if value not in TASKS:
            close = closest(value, TASKS)
            hint = (f"did you mean {', '.join(close)}?" if close
                    else "`aem-bench tasks` lists them")
            raise bad_value(argument, value, f"a registered task id ({hint})")
        if scene is not None and TASKS[value].scene != scene:
            raise bad_value(argument, value, f"a {scene} id, not a scene variant: "
                            f"{TASKS[value].base_id}")


def _check_at_least(args, minimum: int, *names: str) -> None:
    """``args.NAME`` (for each of ``names``, as --NAME) an integer of at least ``minimum``."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < minimum:
            raise bad_value(f"--{name.replace('_', '-')}", value,
                            f"an integer of at least {minimum}")


def _check_input_file(argument: str, path) -> None:
    path = Path(path)
    if path.is_dir():
        raise UsageError(argument, f"{path} is a folder; expected a file")
    if not path.exists():
        raise UsageError(argument, f"{path}: no such file")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made in ``folder``: tried, as permissions alone do not tell (root,
    read-only mounts)."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".aem-bench-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def _check_output(argument: str, path, folder: bool, overwrite: bool | None = None) -> None:
    """``path`` can be written as a file (``folder=False``) or a folder: not the other kind, under
    a folder that can be written. ``overwrite=False``: refuse an existing file."""
    path = Path(path)
    kind, other = ("folder", "file") if folder else ("file", "folder")
    if path.exists() and path.is_dir() != folder:
        raise UsageError(argument, f"{path} is a {other}; expected a {kind}")
    if overwrite is False and path.is_file():
        raise UsageError(argument, f"{path} exists; pass --overwrite to replace it")
    if path.is_dir():
        parent = path
    else:
        parent = next(p for p in path.absolute().parents if p.exists())
        if not parent.is_dir():
            raise UsageError(argument, f"{parent} is a file, so {path} cannot be made under it")
    if not _can_create_in(parent):
        raise UsageError(argument, f"{path}: {parent} is read-only")


def _type_name(hint) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _has_type(value, hint) -> bool:
    """Whether a JSON value fits a config field's annotation (lists stand for tuples)."""
    import types
    import typing

    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, param) for param in params)
    if hint is type(None) or hint is None:
        return value is None
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and params and params[-1] is not Ellipsis:
            return len(value) == len(params) and all(map(_has_type, value, params))
        return all(_has_type(item, params[0]) for item in value) if params else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # an annotation this check does not know: the config's own validation decides


def _config_overrides(argument: str, text: str | None, config_class) -> dict:
    """``text``, a JSON object of ``config_class`` fields with values of their types."""
    import dataclasses
    import typing

    if not text:
        return {}
    example = "a JSON object, e.g. '{\"lr\": 0.001}'"
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as err:
        raise bad_value(argument, text, f"{example} (not JSON: {err})") from None
    if not isinstance(overrides, dict):
        raise bad_value(argument, text, example)
    hints = typing.get_type_hints(config_class)
    fields = {field.name for field in dataclasses.fields(config_class)}
    for key, value in overrides.items():
        if key not in fields:
            close = closest(key, fields)
            raise UsageError(argument, f"unknown key {key!r}; expected a field of "
                             f"{config_class.__name__}"
                             + (f" (did you mean {', '.join(close)}?)" if close else ""))
        if not _has_type(value, hints[key]):
            raise UsageError(argument, f"bad value {json.dumps(value)} for {key!r}; expected "
                             f"{_type_name(hints[key])}")
    return overrides


# --- expert and demonstrations ---------------------------------------------------------------
def cmd_expert(args) -> int:
    from aem_bench.expert import expert_rollouts

    _check_tasks("--task", [args.task])
    _check_at_least(args, 1, "episodes", "video_size")
    _check_at_least(args, 0, "seed")
    if args.video:
        _check_output("--video", args.video, folder=True)
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
        _print_json(summary)
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


def cmd_tasks(args) -> int:
    from aem_bench.registration import TASKS, measured_expert_success

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


def _measure_experts(args) -> int:
    """Run every task's expert (no rendering) and write the rates `aem-bench tasks` shows."""
    from aem_bench.evaluator import collect_provenance
    from aem_bench.expert import blind_replay_rate, expert_rollouts
    from aem_bench.registration import TASKS, expert_success_file, measured_expert_success

    _check_ids(args)
    args.episodes = 100 if args.episodes is None else args.episodes
    _check_at_least(args, 1, "episodes")
    _check_pairs(args)
    if not args.out and not args.record:
        raise UsageError("--measure", "name where the rates go: --out FILE.json, or --record "
                         f"to update the package's {expert_success_file().name}")
    if args.out:
        _check_output("--out", args.out, folder=False, overwrite=args.overwrite)
    if args.record:
        _check_output("--record", expert_success_file(), folder=False)
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


def _check_ids(args) -> None:
    """``--ids`` of the measuring commands: absent (every task), else registered task ids."""
    if args.ids is not None:
        if not args.ids:
            raise UsageError("--ids", "expected at least one task id")
        _check_tasks("--ids", args.ids)


def _check_pairs(args) -> None:
    _check_at_least(args, 1, "pairs")
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

    _check_ids(args)
    args.pairs = 20 if args.pairs is None else args.pairs
    _check_pairs(args)
    if args.out:
        _check_output("--out", args.out, folder=False, overwrite=args.overwrite)
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

    if args.tasks is not None:
        if not args.tasks:
            raise UsageError("--tasks", "expected at least one task id")
        if args.memory:
            raise UsageError("--memory", "picks the tasks when --tasks does not: give one")
        _check_tasks("--tasks", args.tasks, scene="clean")
    _check_at_least(args, 1, "size")
    _check_at_least(args, 0, "seed")
    _check_output("--out", args.out, folder=False)
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


def cmd_certify(args) -> int:
    from aem_bench.certify import CERTIFICATE_NAME, CertificateBudget, certificates_file, certify
    from aem_bench.registration import TASKS

    _check_tasks("--task", [args.task], scene="clean")
    if TASKS[args.task].memory is None:
        raise bad_value("--task", args.task, "a memory task (`aem-bench tasks --memory`)")
    budget_args = [name for name in ("demos", "train_steps", "episodes", "camera", "threads")
                   if getattr(args, name) is not None]
    _check_at_least(args, 1, *budget_args)
    out = args.out or Path("runs/certify") / args.task.split("/")[-1]
    _check_output("--out", out, folder=True)
    # The folder's demos, checkpoints and certificate are all of one run.
    if not args.overwrite and any((out / name).exists() for name in (
            CERTIFICATE_NAME, "demos.h5", "with_oracle", "without_oracle")):
        raise UsageError("--out", f"{out} holds a certification run; pass --overwrite to "
                         "replace it")
    record = certificates_file() if args.record else None
    if record is not None:
        _check_output("--record", record, folder=False)
    if args.from_results:
        entry = _certificate_from_results(args, out, record)
    else:
        fields = {"episodes": "eval_episodes"}  # the flag's name -> the budget's field
        budget = CertificateBudget(**{fields.get(name, name): getattr(args, name)
                                      for name in budget_args})
        entry = certify(args.task, out, budget, progress=not args.json, record=record)
    if args.json:
        _print_json(entry)
        return 0
    for name in ("with_oracle", "without_oracle"):
        rate = entry[name]
        print(f"{args.task} {name}: {rate['successes']}/{rate['episodes']} "
              f"({100 * rate['rate']:.0f}%, 95% CI {100 * rate['ci95'][0]:.0f}-"
              f"{100 * rate['ci95'][1]:.0f}%)")
    guess = entry["best_fixed_guess"]
    print(f"{args.task} best fixed guess on the same seeds: {guess['successes']}/"
          f"{guess['episodes']} ({100 * guess['rate']:.0f}%, 95% CI {100 * guess['ci95'][0]:.0f}-"
          f"{100 * guess['ci95'][1]:.0f}%)")
    print(f"verdict: {entry['verdict']}")
    print(f"chance {entry['chance']:.2f}; expert {entry['expert']['successes']}/"
          f"{entry['expert']['episodes']}; {entry['minutes']} min; written to "
          f"{out / CERTIFICATE_NAME}" + (f" and recorded in {record}" if record else ""))
    return 0


def _certificate_from_results(args, out: Path, record: Path | None) -> dict:
    from aem_bench.certify import CERTIFICATE_NAME, certificate_from_results, record_certificate

    for name in ("demos", "train_steps", "episodes", "camera", "threads"):
        if getattr(args, name) is not None:
            raise UsageError(f"--{name.replace('_', '-')}", "sets the training of a certificate "
                             "run; --from-results takes the budget the results were made with")
    results = []
    for path in args.from_results:
        _check_input_file("--from-results", path)
        results.append(json.loads(Path(path).read_text()))
    entry = certificate_from_results(args.task, *results, command=args.command_line)
    out.mkdir(parents=True, exist_ok=True)
    (out / CERTIFICATE_NAME).write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n")
    if record is not None:
        record_certificate(entry, record)
    return entry


def cmd_demos(args) -> int:
    from aem_bench.expert import record_demos

    _check_tasks("--task", [args.task])
    _check_at_least(args, 1, "episodes", "camera")
    _check_at_least(args, 0, "seed")
    _check_output("--out", args.out, folder=False, overwrite=getattr(args, "overwrite", False))
    env_kwargs = {} if args.obs_mode == "rgb" else {"obs_mode": args.obs_mode}
    if getattr(args, "camera", 128) != 128:
        env_kwargs["camera_size"] = (args.camera, args.camera)
    try:
        tried = record_demos(args.task, args.episodes, args.out, seed=args.seed, **env_kwargs)
    except ValueError as err:  # the expert came short: not bad input
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.episodes} successful episodes ({tried} seeds tried) to {args.out}")
    return 0


# --- training and evaluation -----------------------------------------------------------------
def _check_run_dir(args, names: tuple[str, ...]) -> None:
    """``--out`` of train or pretrain: a folder that holds no run, unless it is resumed or
    overwritten; ``--overwrite`` removes what the old run left (its evaluations included)."""
    import shutil

    from aem_bench.policies.distributed import launched_rank

    _check_output("--out", args.out, folder=True)
    if args.resume and args.overwrite:
        raise UsageError("--overwrite", "give --resume or --overwrite, not both")
    # Under torchrun only rank 0 looks: another rank may look after rank 0 has begun writing this
    # run, and take its files for an old run's. An error on rank 0 stops the whole launch.
    if launched_rank() != 0:
        return
    found = [Path(args.out) / name for name in names if (Path(args.out) / name).exists()]
    if not found or args.resume:
        return
    if not args.overwrite:
        raise UsageError("--out", f"{args.out} holds a checkpoint; pass --resume to continue "
                         "it or --overwrite to replace it (and its evaluations in eval/)")
    for path in found:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _check_ablation(args, part: str) -> dict:
    from aem_bench.policies.configuration_aem import ABLATIONS, ablation

    if not args.ablation:
        return {}
    if args.ablation not in ABLATIONS:
        raise UsageError("--ablation", f"unknown AEM ablation {args.ablation!r}; expected one "
                         f"of {', '.join(ABLATIONS)}")
    return ablation(args.ablation, part)


def cmd_train(args) -> int:
    from aem_bench.policies import POLICIES, PolicyConfig, distributed
    from aem_bench.policies.training import LOG_NAME, RECIPE_NAME, STATE_DIR, train

    if args.policy not in POLICIES:
        close = closest(args.policy, POLICIES)
        raise bad_value("--policy", args.policy, "a zoo policy ("
                        + (f"did you mean {', '.join(close)}?" if close
                           else "`aem-bench policies` lists them") + ")")
    if args.ablation and not args.policy.startswith("aem-"):
        raise UsageError("--ablation", f"applies to the AEM policies (aem-dp, aem-flow), not "
                         f"{args.policy!r}")
    _check_input_file("--demos", args.demos)
    _check_at_least(args, 1, "steps", "batch_size", "save_every", "threads")
    _check_at_least(args, 0, "seed")
    overrides = _config_overrides("--config", args.config, PolicyConfig)
    overrides = {**_check_ablation(args, "policy"), **overrides}
    _check_run_dir(args, ("config.json", "model.safetensors", STATE_DIR, LOG_NAME, RECIPE_NAME,
                          "eval"))
    train(args.policy, args.demos, args.out, steps=args.steps, batch_size=args.batch_size,
          seed=args.seed, config_overrides=overrides, num_threads=args.threads,
          save_every=args.save_every, resume=args.resume,
          command=getattr(args, "command_line", None))
    if distributed.launched_rank() == 0:  # under torchrun, the rank that wrote it says so
        print(f"checkpoint written to {args.out}")
    return 0


def cmd_pretrain(args) -> int:
    from aem_bench.policies import distributed
    from aem_bench.policies.configuration_aem import AEMConfig
    from aem_bench.policies.pretraining import pretrain
    from aem_bench.policies.training import LOG_NAME, RECIPE_NAME, STATE_DIR

    _check_input_file("--demos", args.demos)
    _check_at_least(args, 1, "steps", "save_every", "threads")
    _check_at_least(args, 0, "seed")
    overrides = _config_overrides("--config", args.config, AEMConfig)
    overrides = {**_check_ablation(args, "pretrain"), **overrides}
    _check_run_dir(args, ("config.json", "model.safetensors", STATE_DIR, LOG_NAME, RECIPE_NAME))
    pretrain(args.demos, args.out, steps=args.steps, seed=args.seed, config_overrides=overrides,
             num_threads=args.threads, save_every=args.save_every, resume=args.resume,
             command=getattr(args, "command_line", None))
    if distributed.launched_rank() == 0:
        print(f"AEM checkpoint written to {args.out}")
    return 0


def cmd_policies(args) -> int:
    from tabulate import tabulate

    from aem_bench.policies import POLICIES, PolicyConfig

    rows = []
    for name, defaults in sorted(POLICIES.items()):
        config = PolicyConfig.from_dict({**defaults, "policy_type": name})
        rows.append({"policy": name, "encoder": config.encoder, "head": config.head,
                     "obs_horizon": config.obs_horizon, "pred_horizon": config.pred_horizon,
                     "action_steps": config.action_steps,
                     "inference_steps": config.num_inference_steps})
    if args.json:
        _print_json(rows)
    else:
        print(tabulate(rows, headers="keys"))
    return 0


def _eval_tasks(args) -> list[str]:
    """The task ids of ``--task`` or of ``--suite``/``--variant``."""
    from aem_bench.registration import current_tasks

    if args.task and args.suite:
        raise UsageError("--suite", "give --task or --suite, not both")
    if args.variant and not args.suite:
        raise UsageError("--variant", "applies to --suite; name a variant's ids with --task")
    if not args.suite:
        tasks = args.task or [DEFAULT_TASK]
        _check_tasks("--task", tasks)
        return tasks
    suites = {"manipulation": lambda spec: spec.memory is None,
              "memory": lambda spec: spec.memory is not None, "all": lambda spec: True}
    variants = args.variant or ["clean"]
    return [env_id for env_id, spec in current_tasks().items()
            if suites[args.suite](spec) and spec.scene in variants]


def _check_checkpoint(argument: str, path, pretraining: bool = False) -> None:
    """``path`` a policy checkpoint folder (what is wrong inside, load_policy names), or with
    ``pretraining`` also an AEM pretraining run."""
    path = Path(path)
    if path.is_file():
        raise UsageError(argument, f"{path} is a file; expected a checkpoint folder")
    if not path.exists():
        raise UsageError(argument, f"{path}: no such checkpoint folder")
    try:
        policy_type = json.loads((path / "config.json").read_text()).get("policy_type")
    except (OSError, ValueError, AttributeError):
        return
    if policy_type == "aem-pretrain" and not pretraining:
        raise UsageError(argument, f"{path} is an AEM pretraining checkpoint, not a policy; "
                         "train a policy on it: aem-bench train --policy aem-dp --config "
                         f"'{{\"aem_checkpoint\": \"{path}\"}}' ...")


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
    overwrite = getattr(args, "overwrite", False)
    outputs = []
    for task in tasks:
        stem = f"{task.replace('/', '_')}_{args.episodes}ep_seed{args.seed}"
        out = Path(args.out) if args.out else results_dir / f"{stem}.json"
        log = Path(args.log) if args.log else out.with_suffix(".jsonl")
        _check_output("--out" if args.out else "--results-dir", out, folder=False,
                      overwrite=overwrite)
        _check_output("--log", log, folder=False)
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
    from aem_bench.evaluator import write_report

    tasks = _eval_tasks(args)
    _check_checkpoint("--policy", args.policy)
    _check_at_least(args, 1, "episodes", "workers", "threads", "video_episodes")
    _check_at_least(args, 0, "seed")
    for seed in args.video_seed or []:
        if seed < 0:
            raise bad_value("--video-seed", seed, "a seed of at least 0")
    if args.video_seed and not args.video:
        raise UsageError("--video-seed", "applies with --video DIR")
    if getattr(args, "address", None) and getattr(args, "backend", "local") != "ray":
        raise UsageError("--address", "is a Ray cluster's: it needs --backend ray")
    outputs = _eval_outputs(args, tasks)
    if args.video:
        _check_output("--video", args.video, folder=True)
    if getattr(args, "overwrite", False):  # a fresh evaluation: no episode of the old one kept
        for _, _, log in outputs:
            log.unlink(missing_ok=True)
    else:
        _check_logs_are_of(args, [log for _, _, log in outputs])
    policy = load_for_eval(args.policy, args.threads)  # loaded once, for every task
    # Namespaces built in code (cmd_pipeline) may predate --backend/--address.
    backend, address = getattr(args, "backend", "local"), getattr(args, "address", None)
    results_dir = Path(args.results_dir or Path(args.policy) / "eval")
    reports, failed = [], 0
    for task, out, log in outputs:
        report = evaluate_checkpoint(
            args.policy, task, args.episodes, args.seed, name=args.name, threads=args.threads,
            workers=args.workers, policy=policy, progress=not args.json, log=log,
            video_dir=args.video, video_format=args.video_format,
            video_episodes=args.video_seed or args.video_episodes, backend=backend,
            address=address)
        errors = [record.error for record in report.records if record.error is not None]
        if len(errors) == len(report.records):
            # Not a result (0% of nothing that ran): no results file for the leaderboard.
            print(f"aem-bench eval: error: {task}: all {len(errors)} episodes errored, the "
                  f"first with: {errors[0]}; no results file written (the episodes are in "
                  f"{log})", file=sys.stderr)
            failed += 1
            continue
        if errors:
            print(f"aem-bench eval: warning: {task}: {len(errors)} of {len(report.records)} "
                  f"episodes errored (counted as failures), the first with: {errors[0]}",
                  file=sys.stderr)
        reports.append(report)
        summary = report.summary()
        write_report(report, out)
        interval = _success_interval(summary, getattr(args, "interval", "wilson"))
        if args.json:
            _print_json({**summary, "interval": interval, "results_file": str(out),
                         "episode_log": str(log)})
        else:
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
    if len(reports) > 1:
        # In a folder of its own: the results folder holds only results files (the leaderboard
        # reads every *.json there).
        label = f"{args.suite}-{'-'.join(args.variant or ['clean'])}" if args.suite else "tasks"
        _write_aggregate(reports, results_dir / "aggregates" /
                         f"{label}_{args.episodes}ep_seed{args.seed}.json", args.json)
    return 1 if failed else 0


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
        _print_json({**aggregate, "aggregate_file": str(path)})
        return
    print(f"across {len(aggregate['tasks'])} tasks: mean success "
          f"{100 * aggregate['mean']:.1f}% (95% CI {100 * aggregate['mean_ci95'][0]:.1f}-"
          f"{100 * aggregate['mean_ci95'][1]:.1f}), IQM {100 * aggregate['iqm']:.1f}% "
          f"({100 * aggregate['iqm_ci95'][0]:.1f}-{100 * aggregate['iqm_ci95'][1]:.1f}); "
          f"written to {path}")


def cmd_probe(args) -> int:
    import torch

    from aem_bench.probe import probe, probe_table, write_probe

    _check_checkpoint("--policy", args.policy, pretraining=True)
    _check_input_file("--demos", args.demos)
    _check_at_least(args, 2, "folds")
    _check_at_least(args, 1, "threads")
    _check_at_least(args, 0, "seed")
    _check_output("--out", args.out, folder=True)
    torch.set_num_threads(args.threads)
    result = probe(args.policy, args.demos, folds=args.folds, seed=args.seed,
                   progress=not args.json, command=getattr(args, "command_line", None))
    path = write_probe(result, args.out)
    if args.json:
        _print_json({**result, "probe_file": str(path)})
        return 0
    print(f"{result['task']}: {result['memory']} memory of {args.policy}, {result['episodes']} "
          f"episodes, {result['fact_values']} values of the hidden fact (the commonest "
          f"{100 * result['majority_rate']:.0f}%)")
    print(probe_table(result))
    print(f"written to {path}")
    return 0


def cmd_body_leak(args) -> int:
    from aem_bench.leaks import LEAK_RULE, leak_checks, leak_table
    from aem_bench.registration import TASKS, current_tasks

    if args.tasks is not None:
        if not args.tasks:
            raise UsageError("--tasks", "expected at least one task id")
        _check_tasks("--tasks", args.tasks)
        for env_id in args.tasks:
            if TASKS[env_id].memory is None:
                raise bad_value("--tasks", env_id, "a memory task (`aem-bench tasks --memory`)")
    _check_at_least(args, 2, "folds")
    _check_at_least(args, 0, "seed", "first_seed")
    if args.episodes < 2 * args.folds:
        raise bad_value("--episodes", args.episodes, f"at least 2 * --folds = {2 * args.folds}")
    if args.out:
        _check_output("--out", args.out, folder=False, overwrite=args.overwrite)
    ids = args.tasks or [env_id for env_id, spec in current_tasks().items()
                         if spec.memory is not None and spec.scene == "clean"]
    results = []
    what = list(dict.fromkeys(args.what))  # each once, in the order given
    for env_id in progress_bar(ids, desc="leak check", unit="task", disable=args.json):
        results += leak_checks(env_id, what, episodes=args.episodes, first_seed=args.first_seed,
                               folds=args.folds, seed=args.seed)
        if args.out:  # written after every task: an interrupted run keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(leak_table(results, "github" if args.markdown else "simple"))
    print(f"\nrule: {LEAK_RULE}")
    return 0


def cmd_leaderboard(args) -> int:
    from aem_bench.leaderboard.publish import write_leaderboard

    if Path(args.results).is_file():
        raise UsageError("--results", f"{args.results} is a file; expected a folder of results "
                         "files")
    if not Path(args.results).exists():
        raise UsageError("--results", f"{args.results}: no such folder")
    _check_output("--out", args.out, folder=False)
    for path in write_leaderboard(args.results, args.out):
        print(f"wrote {path}")
    return 0


# --- the main job ----------------------------------------------------------------------------
def cmd_pipeline(args) -> int:
    """Demonstrations -> training -> evaluation -> leaderboard table, on a small default."""
    from aem_bench.policies import POLICIES

    _check_tasks("--task", [args.task])
    if args.policy not in POLICIES or args.policy.startswith("aem-"):  # aem needs a pretraining
        raise bad_value("--policy", args.policy, "a zoo policy that trains from scratch: "
                        + ", ".join(name for name in POLICIES if not name.startswith("aem-")))
    _check_at_least(args, 1, "demos", "train_steps", "batch_size", "eval_episodes")
    out = Path(args.out)
    _check_output("--out", out, folder=True)
    demos = out / "demos.h5"
    checkpoint = out / "checkpoint"
    results = out / "results"
    if not args.overwrite and any(path.exists() for path in (demos, checkpoint, results)):
        raise UsageError("--out", f"{out} holds a pipeline run; pass --overwrite to replace it")
    overwrite = args.overwrite
    started = time.perf_counter()
    steps = [
        ("demos", lambda: cmd_demos(argparse.Namespace(
            task=args.task, episodes=args.demos, out=demos, seed=0, obs_mode="rgb",
            overwrite=overwrite))),
        ("train", lambda: cmd_train(argparse.Namespace(
            policy=args.policy, demos=demos, out=checkpoint, steps=args.train_steps,
            batch_size=args.batch_size, seed=0, config=None, threads=None, save_every=500,
            resume=False, ablation=None, overwrite=overwrite))),
        ("eval", lambda: cmd_eval(argparse.Namespace(
            policy=checkpoint, task=[args.task], suite=None, variant=None,
            episodes=args.eval_episodes, seed=EVAL_SEED_START, json=False, threads=1, workers=1,
            log=None, results_dir=None, video=out / "videos", video_episodes=2, video_seed=None,
            video_format="gif", overwrite=overwrite,
            out=results / f"{args.policy}_{args.task.replace('/', '_')}.json",
            name=f"{args.policy} ({args.demos} demos, {args.train_steps} steps)"))),
        ("leaderboard", lambda: cmd_leaderboard(argparse.Namespace(
            results=results, out=out / "LEADERBOARD.md"))),
    ]
    for name, run in steps:
        print(f"\n== {name} ({time.perf_counter() - started:.0f} s so far) ==", flush=True)
        if run() != 0:
            print(f"pipeline stopped at '{name}'", file=sys.stderr)
            return 1
    print(f"\npipeline finished in {time.perf_counter() - started:.0f} s; outputs in {out}")
    return 0


# --- encoders from other packages ------------------------------------------------------------
def _default_feature_dim(cls) -> int | None:
    """feature_dim with default options, when that is cheap: set on the class, or a from-scratch
    encoder built for a moment (a pretrained one would read its weights)."""
    if isinstance(getattr(cls, "feature_dim", None), int):
        return cls.feature_dim
    if cls.pretrained:
        return None
    try:
        return cls().feature_dim
    except (TypeError, ValueError):  # options without defaults: nothing cheap to say
        return None


def cmd_encoders(args) -> int:
    from aem_bench.policies.encoders import ENCODERS, installed_encoders

    rows = []
    for info in installed_encoders():
        cls = ENCODERS.get(info.name) if info.error is None else None
        rows.append({
            "name": info.name,
            "class": info.source.reference,
            "distribution": info.source.distribution,
            "version": info.source.version,
            "builtin": info.builtin,
            "entry_point": info.source.entry_point,
            "pretrained": info.pretrained,
            "feature_dim": None if cls is None else _default_feature_dim(cls),
            "error": info.error,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from tabulate import tabulate

    print(tabulate([[r["name"], r["class"], f"{r['distribution']} {r['version']}",
                     {True: "yes", False: "no", None: "?"}[r["pretrained"]],
                     r["feature_dim"] or "-", r["error"] or ""] for r in rows],
                   headers=["name", "class", "from", "pretrained", "feature_dim", "error"]))
    return 0


def cmd_submit(args) -> int:
    from aem_bench.policies.encoders import encoder_class
    from aem_bench.policies.encoders.weights import MissingWeightsError
    from aem_bench.submit import get_protocol, submit

    example = "a JSON object of the encoder's options, e.g. '{\"channels\": 32}'"
    try:
        options = json.loads(args.options) if args.options else {}
    except json.JSONDecodeError as err:
        raise bad_value("--options", args.options, f"{example} (not JSON: {err})") from None
    if not isinstance(options, dict):
        raise bad_value("--options", args.options, example)
    try:
        encoder_class(args.encoder)
    except KeyError as err:  # the zoo's unknown name
        raise UsageError("--encoder", err.args[0]) from None
    _check_output("--out", args.out, folder=True)
    if args.results_dir:
        _check_output("--results-dir", args.results_dir, folder=True)
    protocol = get_protocol(args.protocol)
    try:
        paths = submit(args.encoder, protocol, args.out, encoder_options=options,
                       results_dir=args.results_dir)
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


def build_parser() -> argparse.ArgumentParser:
    from aem_bench.stats import INTERVALS

    parser = argparse.ArgumentParser(prog="aem-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("expert", help="success rate of a task's scripted expert")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="first seed (seeds are consecutive)")
    p.add_argument("--json", action="store_true", help="print a JSON summary only")
    p.add_argument("--video", metavar="DIR", help="also write a GIF of each episode to DIR")
    p.add_argument("--video-size", type=int, default=256, help="video frame size (pixels)")
    p.set_defaults(func=cmd_expert)

    p = sub.add_parser("tasks", help="list the registered tasks with their metadata")
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
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("gallery", help="contact sheet (PNG) of every task in every scene")
    p.add_argument("--out", default="docs/gallery.png")
    p.add_argument("--size", type=int, default=128, help="tile size (pixels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory", action="store_true", help="the memory suite instead")
    p.add_argument("--tasks", nargs="*", help="only these (clean) ids")
    p.set_defaults(func=cmd_gallery)

    p = sub.add_parser("certify", help="measure a memory task's certificate (oracle vs none)")
    p.add_argument("--task", required=True)
    p.add_argument("--out", type=Path, help="work directory; the certificate is written to "
                   "OUT/certificate.json (default runs/certify/TASK)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--record", action="store_true", help="also record the certificate in the "
                   "package's tasks/memory_certificates.json (for maintainers)")
    p.add_argument("--demos", type=int, help="demonstrations (default 50)")
    p.add_argument("--train-steps", type=int, help="training steps (default 2000)")
    p.add_argument("--episodes", type=int, help="evaluation episodes per policy (default 50)")
    p.add_argument("--camera", type=int, help="square camera side, pixels (default 64)")
    p.add_argument("--threads", type=int, help="torch threads (default 1)")
    p.add_argument("--from-results", nargs=2, type=Path, metavar=("WITHOUT", "WITH"),
                   help="no training: the certificate of two results files already made (e.g. "
                   "a sweep's singleframe-dp and singleframe-dp-with-oracle cells), without and "
                   "with the oracle")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_certify)

    p = sub.add_parser("demos", help="record the expert's successful episodes to HDF5")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true", help="replace the file --out if it exists")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--obs-mode", default="rgb", choices=["rgb", "rgb+oracle"],
                   help="rgb+oracle also records the hidden fact of a memory task")
    p.add_argument("--camera", type=int, default=128,
                   help="square camera side (pixels); the memory certificates use 64")
    p.set_defaults(func=cmd_demos)

    p = sub.add_parser("train", help="train a policy on demonstrations")
    p.add_argument("--policy", default="singleframe-dp",
                   help="a zoo policy name (see `aem-bench policies`)")
    p.add_argument("--demos", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help='JSON of config overrides, e.g. \'{"num_inference_steps": 5}\'')
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out (same policy and settings)")
    p.add_argument("--overwrite", action="store_true", help="replace the checkpoint in --out "
                   "and remove its evaluations (--out/eval)")
    p.add_argument("--ablation", help="aem-dp/aem-flow: an AEM ablation's policy settings "
                   "(full, no-actions, no-pretraining, memory-only, feature-add, mask-0.5, "
                   "mask-0.9)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("pretrain", help="AEM pretraining (action-effect memory) on demonstrations")
    p.add_argument("--demos", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help='JSON of AEMConfig overrides, e.g. \'{"mask_ratio": 0.5}\'')
    p.add_argument("--threads", type=int, help="torch threads (default: every CPU allowed)")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the checkpoint in --out")
    p.add_argument("--ablation", help="an AEM ablation's pretraining settings (see train)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("policies", help="list the policy zoo: encoder, head, horizons")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_policies)

    p = sub.add_parser("eval", help="evaluate a checkpoint: success rate, CI, latency")
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
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="where episodes run: this machine's processes, or Ray actors "
                   "(pip install 'aem-bench[ray]')")
    p.add_argument("--address", help="with --backend ray: the cluster to join (e.g. "
                   "ray://HOST:10001 or HOST:6379; default: a local Ray instance)")
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
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("probe", help="does a policy's memory hold the hidden fact? linear "
                       "probes at the cue, midway and the decision step")
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
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("body-leak", help="do the joint state or the scene tell a memory task's "
                       "hidden fact once the cue is gone? a linear probe on expert episodes")
    p.add_argument("--tasks", nargs="*", help="memory task ids (default: the memory suite's "
                   "clean tasks)")
    p.add_argument("--episodes", type=int, default=100, help="successful expert episodes per task")
    p.add_argument("--what", nargs="+", choices=["qpos", "scene"], default=["qpos"],
                   help="what is probed: the joint state (qpos, default), the scene (the state "
                   "observation's object poses), or both, on the same expert episodes")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds over episodes")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds' shuffle")
    p.add_argument("--out", help="the results' JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace --out")
    p.add_argument("--markdown", action="store_true", help="the table as Markdown")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_body_leak)

    p = sub.add_parser("leaderboard",
                       help="render results files: Markdown, a self-contained web page, plots")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument("--out", type=Path, default=Path("leaderboard/README.md"),
                   help="the Markdown file; index.html and plots/ are written beside it")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("pipeline", help="demos, training, evaluation and table on a small default")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--policy", default="singleframe-dp")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--demos", type=int, default=10)
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("encoders", help="list built-in encoders and those installed by packages "
                       "(entry-point group aem_bench.encoders)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_encoders)

    p = sub.add_parser("submit", help="run the fixed protocol for an encoder and write "
                       "leaderboard results files")
    p.add_argument("--encoder", required=True,
                   help="a registered or installed encoder name, or package.module:Class")
    p.add_argument("--protocol", default="standard", choices=["standard", "smoke"],
                   help="standard: the leaderboard's (estimated half an hour per task on 2 "
                   "CPU cores); smoke: a minute, to check that the package works")
    p.add_argument("--options", help='JSON of the encoder\'s options, e.g. \'{"channels": 32}\'')
    p.add_argument("--out", type=Path, default=Path("runs/submit"),
                   help="work directory: demonstrations (recorded once, shared by submissions), "
                   "checkpoints, results (default runs/submit)")
    p.add_argument("--results-dir", type=Path, help="where results files go (default OUT/results)")
    p.set_defaults(func=cmd_submit)

    from aem_bench.recipe import protocol_names
    from aem_bench.sweep import MEMORY_ROWS

    p = sub.add_parser("sweep", help="policy rows x tasks x scenes under one protocol, every "
                       "stage cached and resumable",
                       epilog="example: aem-bench sweep --protocol certificate-budget "
                       "--tasks AEM/ShellGame-v0 --workers 2 --dry-run")
    p.add_argument("--protocol", default="certificate-budget", choices=protocol_names(),
                   help="certificate-budget: the memory suite at each task's certificate budget; "
                   "demo: what `make demo` runs")
    p.add_argument("--rows", nargs="+", default=list(MEMORY_ROWS),
                   help="policy rows (default: the memory suite's)")
    p.add_argument("--tasks", nargs="+", help="clean task ids (default: the protocol's)")
    p.add_argument("--scenes", nargs="+", help="scenes to evaluate in (default: the protocol's)")
    p.add_argument("--workers", type=int, default=1, help="processes, one core each")
    p.add_argument("--cache", type=Path,
                   help="demonstrations, checkpoints, episode logs (default runs/sweep/PROTOCOL)")
    p.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"))
    p.add_argument("--video", type=Path,
                   help="write a GIF of each cell's first evaluation episode under VIDEO/ROW/")
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells, their state and the core-minutes left; run nothing")
    p.set_defaults(func=cmd_sweep)
    return parser


def cmd_sweep(args) -> int:
    from aem_bench.recipe import get_protocol
    from aem_bench.registration import TASKS, VARIANT_SUFFIXES
    from aem_bench.sweep import ROWS, Sweep, cells, run, status_table

    protocol = get_protocol(args.protocol)
    unknown = [name for name in args.rows if name not in ROWS]
    if unknown:
        raise UsageError("--rows", f"unknown rows {unknown}; rows: {', '.join(sorted(ROWS))}")
    tasks = args.tasks or list(protocol.tasks)
    _check_tasks("--tasks", tasks, scene="clean")
    for scene in args.scenes or []:
        if scene not in VARIANT_SUFFIXES:
            raise bad_value("--scenes", scene, f"one of {', '.join(VARIANT_SUFFIXES)}")
    oracle_rows = [name for name in args.rows if ROWS[name].reads_oracle]
    no_oracle = [task for task in tasks if TASKS[task].memory is None]
    if oracle_rows and no_oracle:
        raise UsageError("--rows", f"{oracle_rows[0]} reads a memory task's oracle; "
                         f"{no_oracle[0]} is not a memory task")
    _check_at_least(args, 1, "workers")
    _check_output("--results-dir", args.results_dir, folder=True)
    cache = args.cache or Path("runs/sweep") / protocol.name
    _check_output("--cache", cache, folder=True)
    if args.video:
        _check_output("--video", args.video, folder=True)
    sweep = Sweep(protocol, Path(cache), Path(args.results_dir), command=args.command_line,
                  video_dir=args.video)
    todo = cells(protocol, args.rows, tasks, args.scenes)
    print(status_table(sweep, todo), flush=True)
    if args.dry_run:
        return 0
    started = time.perf_counter()
    errors = run(sweep, todo, workers=args.workers)
    print(f"\n{status_table(sweep, todo)}\n\nsweep ran for "
          f"{(time.perf_counter() - started) / 60:.1f} min")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    from aem_bench.evaluator import EvaluationError

    args = build_parser().parse_args(argv)
    # The command as a reader reruns it, for the records a command writes.
    args.command_line = "aem-bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except EvaluationError as err:
        # Episodes finished before are in the episode log; the message says how to resume.
        print(f"aem-bench {args.command}: stopped: {err}", file=sys.stderr)
        return 1
    except (UsageError, ValueError, FileNotFoundError) as err:
        # Bad input: an argument refused before the work (UsageError), or a file found damaged
        # or of another run while reading it (CheckpointError, DemoFileError and other
        # ValueErrors). One clear line, not a traceback. A KeyError is a bug's, and shows one.
        print(f"aem-bench {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
