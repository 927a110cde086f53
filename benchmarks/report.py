"""Run the speed benchmarks and write BENCHMARKS.md.

    .venv/bin/python benchmarks/report.py                 # 3 runs, pinned to CPU 0
    .venv/bin/python benchmarks/report.py --runs 1 --out /tmp/BENCHMARKS.md

Each run is one ``pytest benchmarks --benchmark-only --benchmark-json=...`` process, in which
every environment is measured side by side with ManiSkill3's PickCube-v1. The ratio to PickCube is
computed within each run (same process, same minutes, same load) and the report gives the
median over runs of those ratios, and the median over runs of each benchmark's median step time.
Then a short cProfile of ``env.step`` (in a separate, equally pinned process) splits a step into
rendering, physics and the rest.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import pstats
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
TARGET_STEPS_PER_S = 200.0
REFERENCE = "test_maniskill_pickcube_rgb128"
HEADLINE = "test_aem_handover_rgb128"

ROWS = {  # test name -> (environment, observation, what one round times)
    "test_aem_handover_rgb128": ("AEM/HandoverBlock-v0", "RGB 128x128 + qpos", "`env.step`"),
    "test_aem_handover_rgb64": ("AEM/HandoverBlock-v0", "RGB 64x64 + qpos", "`env.step`"),
    "test_aem_handover_physics_only": (
        "AEM/HandoverBlock-v0", "none (physics only)",
        "drive targets + 5 x `scene.step()`"),
    "test_maniskill_pickcube_rgb128": ("ManiSkill3 PickCube-v1", "RGB 128x128 (`obs_mode=rgb`)",
                                       "`env.step`"),
    "test_maniskill_pickcube_state": ("ManiSkill3 PickCube-v1", "state (`obs_mode=state`)",
                                      "`env.step`"),
    "test_remember_color_ms3[state]": ("AEM/RememberColor3-MS3-v0 (ManiSkill3 port, CPU)",
                                       "state (`obs_mode=state`)", "`env.step`"),
    "test_remember_color_ms3[rgb]": ("AEM/RememberColor3-MS3-v0 (ManiSkill3 port, CPU)",
                                     "RGB 128x128 (`obs_mode=rgb`)", "`env.step`"),
}


# --- running ---------------------------------------------------------------------------------
def pytest_command(json_path: Path | str) -> list[str]:
    return [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-only", "-q",
            "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
            "--benchmark-columns=median,iqr,ops,rounds", f"--benchmark-json={json_path}"]


def run_benchmarks(runs: int, env: dict, keep_json: Path | None) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(runs):
            json_path = Path(tmp) / f"run{index}.json"
            print(f"[report] run {index + 1}/{runs}: {shlex.join(pytest_command(json_path))}",
                  flush=True)
            subprocess.run(pytest_command(json_path), cwd=ROOT, env=env, check=True)
            data = json.loads(json_path.read_text())
            results.append(data)
            if keep_json is not None:
                keep_json.mkdir(parents=True, exist_ok=True)
                (keep_json / json_path.name).write_text(json_path.read_text())
    return results


# --- profiling (runs in a child process: `report.py --profile-child`) -----------------------
PROFILE_STEPS = 206  # one expert episode

CATEGORIES = {  # pstats function name -> category
    "<built-in method sapien.pysapien.render.take_picture>": "render: take_picture",
    "<built-in method sapien.pysapien.render.get_picture>": "render: get_picture",
}
# cProfile names both PhysX's and the render system's native `step` "sapien.pysapien.step";
# they are told apart by their caller: `update_render` (pose sync to the renderer) or not.
NATIVE_STEP = "<built-in method sapien.pysapien.step>"
OTHER = "Python, numpy, torch and other bindings"


def _profile_env_steps(env, actions, episode_steps) -> dict:
    from test_env_speed import TrajectoryReplay

    replay = TrajectoryReplay(env, actions, episode_steps)
    replay.warm_up()
    profiler = cProfile.Profile()
    for _ in range(PROFILE_STEPS):
        (action,), _ = replay.setup()
        profiler.enable()
        env.step(action)
        profiler.disable()
    stats = pstats.Stats(profiler).stats  # {(file, line, name): (cc, nc, tottime, cumtime, ...)}
    total = sum(entry[2] for entry in stats.values())
    parts: dict[str, float] = {}
    for (_, _, name), entry in stats.items():
        if name == NATIVE_STEP:
            for (_, _, caller), caller_entry in entry[4].items():
                category = ("render: update_render (pose sync)" if "render" in caller
                            else "physics: PhysX step")
                parts[category] = parts.get(category, 0.0) + caller_entry[2]
            continue
        category = CATEGORIES.get(name, OTHER)
        parts[category] = parts.get(category, 0.0) + entry[2]
    return {"ms_per_step": 1e3 * total / PROFILE_STEPS,
            "parts_ms": {key: 1e3 * value / PROFILE_STEPS for key, value in parts.items()}}


def profile_child() -> None:
    sys.path.insert(0, str(BENCH_DIR))
    import conftest

    conftest.pytest_configure(None)  # pin, as in the benchmark run, before sapien starts threads
    import test_env_speed as t

    out = {}
    env = t.make_aem((128, 128))
    out[HEADLINE] = _profile_env_steps(env, t.record_expert(env), None)
    env.close()
    env, actions = t.make_pickcube("rgb")
    out[REFERENCE] = _profile_env_steps(env, actions, t.MS_EPISODE_STEPS)
    env.close()
    print("PROFILE_JSON " + json.dumps(out))


def run_profile(env: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--profile-child"]
    print(f"[report] profiling: {shlex.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("PROFILE_JSON "):
            return json.loads(line.removeprefix("PROFILE_JSON "))
    raise RuntimeError(f"profile child printed no result:\n{proc.stdout}\n{proc.stderr}")


# --- report ----------------------------------------------------------------------------------
def summarise(results: list[dict]) -> dict[str, dict]:
    """Per benchmark: median over runs of the per-run median (wall and CPU) and of the ratios."""
    per_run: list[dict[str, dict]] = [
        {bench["name"]: bench for bench in data["benchmarks"]} for data in results]
    summary = {}
    for name in ROWS:
        runs = [run[name] for run in per_run if name in run]
        if not runs:
            continue
        wall = [r["stats"]["median"] for r in runs]
        cpu = [r["extra_info"]["cpu_ms_median"] / 1e3 for r in runs]
        ratios_wall = [run[REFERENCE]["stats"]["median"] / run[name]["stats"]["median"]
                       for run in per_run if name in run and REFERENCE in run]
        summary[name] = {
            "wall_ms": 1e3 * statistics.median(wall),
            "wall_ms_runs": [1e3 * w for w in wall],
            "iqr_ms": 1e3 * statistics.median(r["stats"]["iqr"] for r in runs),
            "cpu_ms": 1e3 * statistics.median(cpu),
            "rounds": runs[0]["stats"]["rounds"],
            "ratio_wall": statistics.median(ratios_wall) if ratios_wall else None,
            "ratio_wall_runs": ratios_wall,
        }
    return summary


INTERLEAVED = "test_interleaved_aem_vs_pickcube"
INTERLEAVED_KEYS = ("aem_ms_median", "pickcube_ms_median", "ratio_of_medians",
                    "ratio_median_per_round")


def summarise_interleaved(results: list[dict]) -> dict | None:
    """Median over runs of each figure of the interleaved benchmark, and the per-run values."""
    runs = [bench["extra_info"] for data in results for bench in data["benchmarks"]
            if bench["name"] == INTERLEAVED]
    if not runs:
        return None
    out = {key: statistics.median(run[key] for run in runs) for key in INTERLEAVED_KEYS}
    out["ratio_runs"] = [run["ratio_median_per_round"] for run in runs]
    out["rounds"] = next(bench["stats"]["rounds"] for data in results
                         for bench in data["benchmarks"] if bench["name"] == INTERLEAVED)
    return out


PER_TASK = "test_task_step_rgb128"


def summarise_per_task(results: list[dict]) -> dict[str, dict]:
    """Per task id: median over runs of the per-run median step time (wall and CPU), and of the
    ratio to PickCube-v1 within each run."""
    rows: dict[str, dict[str, list[float]]] = {}
    for data in results:
        by_name = {bench["name"]: bench for bench in data["benchmarks"]}
        reference = by_name.get(REFERENCE)
        for bench in data["benchmarks"]:
            if bench["name"].split("[")[0] != PER_TASK:
                continue
            row = rows.setdefault(bench["extra_info"]["env_id"],
                                  {"wall": [], "cpu": [], "ratio": []})
            row["wall"].append(1e3 * bench["stats"]["median"])
            row["cpu"].append(bench["extra_info"]["cpu_ms_median"])
            if reference:
                row["ratio"].append(reference["stats"]["median"] / bench["stats"]["median"])
    return {env_id: {key: statistics.median(values) if values else None
                     for key, values in row.items()} for env_id, row in rows.items()}


def per_task_markdown(per_task: dict[str, dict], runs: int) -> list[str]:
    if not per_task:
        return []
    lines = [
        "## Every task, default camera (RGB 128x128)", "",
        (f"`{PER_TASK}`: `env.step` over each task's own expert episode (seed 0) replayed twice "
         f"(at least 200 rounds), pinned as above; medians over rounds, then over {runs} run(s). "
         f"The target is {TARGET_STEPS_PER_S:.0f} steps/s."), "",
        "| task | median ms/step | steps/s | CPU ms/step | vs PickCube-v1 RGB | target |",
        "|---|---:|---:|---:|---:|---|"]
    for env_id, row in sorted(per_task.items()):
        rate = 1e3 / row["wall"]
        lines.append(f"| {env_id} | {row['wall']:.2f} | {rate:.0f} | {row['cpu']:.2f} | "
                     f"{_fmt_ratio(row['ratio'])} | "
                     f"{'met' if rate >= TARGET_STEPS_PER_S else 'not met'} |")
    return [*lines, ""]


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def render_markdown(summary: dict, interleaved: dict | None, results: list[dict],
                    profile: dict | None, command: str, started: str) -> str:
    machine = results[-1]["machine_info"]
    versions = machine.get("versions", {})
    affinity = machine.get("affinity")
    one_core = machine.get("pinned") and len(affinity or []) == 1
    cores_txt = (f"pinned to CPU {affinity[0]} (one core)" if one_core
                 else f"affinity {affinity} (not a one-core figure)")
    loads = [data["machine_info"].get("loadavg_at_end", [None])[0] for data in results]
    busy_runs = [data["machine_info"].get("cpu_busy_fraction", {}) for data in results]
    head = summary.get(HEADLINE)
    lines = ["# Benchmarks: environment steps per second", ""]
    lines += [
        ("Generated by `benchmarks/report.py`; do not edit by hand. One `env.step` per timed round "
         "(median over the rounds), measured side by side with ManiSkill3's `PickCube-v1` at the "
         "same camera size on the CPU backend, in the same pytest process."), ""]
    if head:
        rate = 1e3 / head["wall_ms"]
        rate_cpu = 1e3 / head["cpu_ms"]
        verdict = "met" if rate >= TARGET_STEPS_PER_S else "NOT met"
        lines += [
            f"**Target: at least {TARGET_STEPS_PER_S:.0f} steps/s on one core with the camera "
            f"(`AEM/HandoverBlock-v0`, RGB 128x128): {verdict} in wall-clock time, "
            f"{rate:.0f} steps/s ({head['wall_ms']:.2f} ms/step); by CPU time "
            f"{rate_cpu:.0f} steps/s ({head['cpu_ms']:.2f} ms/step).**"
            + ("" if one_core else " (This run was not pinned to one core.)"), ""]
        ratio = (interleaved["ratio_median_per_round"] if interleaved
                 else summary[HEADLINE]["ratio_wall"])
        reference = summary.get(REFERENCE)
        if ratio and reference:
            budget_ms = 1e3 / TARGET_STEPS_PER_S
            lines += [
                (f"In relative terms: AEM steps {ratio:.1f}x as fast as PickCube-v1 "
                 f"(RGB 128, {'interleaved' if interleaved else 'side by side'}), so it makes "
                 f"{TARGET_STEPS_PER_S:.0f} steps/s on any core where PickCube-v1 steps in under "
                 f"{budget_ms:.0f} ms x {ratio:.1f} = {budget_ms * ratio:.0f} ms; here it took "
                 f"{reference['wall_ms']:.0f} ms."), ""]
    lines += [
        ("| environment | observation | timed | median ms/step | steps/s | vs PickCube-v1 RGB | "
         "CPU ms/step | IQR ms | rounds |"),
        "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, (env_id, obs, timed) in ROWS.items():
        row = summary.get(name)
        if row is None:
            continue
        lines.append(
            f"| {env_id} | {obs} | {timed} | {row['wall_ms']:.2f} | {1e3 / row['wall_ms']:.0f} | "
            f"{_fmt_ratio(row['ratio_wall'])} | {row['cpu_ms']:.2f} | {row['iqr_ms']:.2f} | "
            f"{row['rounds']} |")
    lines += [
        "",
        ("- *median ms/step*: wall clock (`time.perf_counter`, pytest-benchmark's timer), median "
         f"over a run's rounds, then median over {len(results)} run(s). *steps/s* = 1000 / that."),
        ("- *vs PickCube-v1 RGB*: PickCube-v1's median step time divided by this row's, computed "
         "within each run and then the median over runs (higher is faster; 1.0x for PickCube "
         "itself)."),
        ("- *CPU ms/step*: CPU time of the whole process (all threads: Python, PhysX, Mesa "
         "lavapipe) in the same call, `time.process_time`, median. Close to the wall time means "
         "the process had its core to itself (no time slicing, no waiting); other processes' "
         "load can still slow it through shared caches, memory bandwidth or the hypervisor, "
         "which CPU time does not show: hence ratios measured side by side."),
        "- Per-run wall medians (ms) and ratios, to judge the noise: "
        + "; ".join(
            f"{name.removeprefix('test_')}: "
            + ", ".join(f"{v:.2f}" for v in row["wall_ms_runs"])
            + (" (ratio " + ", ".join(f"{v:.1f}x" for v in row["ratio_wall_runs"]) + ")"
               if row["ratio_wall_runs"] else "")
            for name, row in summary.items()) + ".",
        "",
    ]
    lines += per_task_markdown(summarise_per_task(results), len(results))
    if interleaved:
        lines += [
            "## Interleaved: the ratio least exposed to the machine's load", "",
            (f"Each of {interleaved['rounds']} rounds steps `AEM/HandoverBlock-v0` (RGB 128) and "
             "then `PickCube-v1` (RGB 128), each call timed on its own, so both see the same "
             "moment's load (`test_interleaved_aem_vs_pickcube`). Medians over rounds, then over "
             "runs."), "",
            ("| AEM/HandoverBlock-v0 ms/step | PickCube-v1 ms/step | ratio of medians | "
             "median per-round ratio | per-run per-round ratios |"),
            "|---:|---:|---:|---:|---|",
            f"| {interleaved['aem_ms_median']:.2f} | {interleaved['pickcube_ms_median']:.2f} | "
            f"{interleaved['ratio_of_medians']:.1f}x | "
            f"{interleaved['ratio_median_per_round']:.1f}x | "
            + ", ".join(f"{v:.1f}x" for v in interleaved["ratio_runs"]) + " |",
            "",
        ]
    lines += [
        "## What is measured",
        "",
        ("- `AEM/HandoverBlock-v0` (`gym.make`, default wrappers): two Pandas rendered with "
         "low-poly visuals (their collision meshes), one head camera, SAPIEN's `minimal` shader "
         "less its image-based lighting (the same pixels; `camera_shader_dir()`), "
         "20 Hz control with 5 PhysX substeps. Actions: a recorded expert episode (seed 0, 206 "
         "steps, solved) replayed cyclically; the reset at its end is outside the timed region. "
         "The `physics only` row times the physics part of that same step (drive targets of both "
         "arms + 5 `scene.step()`), no picture, success check or reward."),
        ("- ManiSkill3 `PickCube-v1`: `gym.make(\"PickCube-v1\", obs_mode=\"rgb\", "
         "sim_backend=\"cpu\", render_backend=\"cpu\", control_mode=\"pd_joint_pos\", "
         "sensor_configs=dict(width=128, height=128))`; one Panda with its full visual meshes, "
         "one 128x128 `base_camera` (ManiSkill's default `minimal` shader, 90 degree FOV), 20 Hz "
         "control with 5 substeps, observations as torch CPU tensors. Actions: sampled from the "
         "action space with a fixed seed beforehand (as ManiSkill's own speed scripts do); reset "
         "every 50 steps (its episode length), untimed. The `state` row is the same task without "
         "a camera, for reference."),
        ("- Every environment is warmed up first (the first picture in a process takes ~10 s: "
         "SAPIEN builds a BRDF lookup table on the CPU renderer)."),
        ("- One core: the benchmark process is pinned with `os.sched_setaffinity` at pytest start "
         "(`benchmarks/conftest.py`, `AEM_BENCH_CPUS`, default `0`), before any thread starts, so "
         "lavapipe's rasteriser threads, PhysX and torch share that one core."),
        ("- Both simulators render through SAPIEN's one render device per process: our tasks ask "
         "for it by ManiSkill's names (`\"cuda\"`, else `\"cpu\"`), so the two share it."),
        "",
    ]
    if profile:
        lines += ["## Where a step's time goes (cProfile)", "",
                  (f"`cProfile` over {PROFILE_STEPS} `env.step` calls in a separate process pinned "
                   "the same way (profiling inflates the Python share; the native calls are "
                   "measured as they are). `get_picture` includes waiting for lavapipe to finish "
                   "the frame that `take_picture` submitted."), "",
                  "| environment | part | ms/step | share |", "|---|---|---:|---:|"]
        for name, prof in profile.items():
            env_id = ROWS[name][0]
            total = prof["ms_per_step"]
            for part, ms in sorted(prof["parts_ms"].items(), key=lambda kv: -kv[1]):
                lines.append(f"| {env_id} RGB 128 | {part} | {ms:.2f} | {100 * ms / total:.0f}% |")
            lines.append(f"| {env_id} RGB 128 | **total (profiled)** | {total:.2f} | 100% |")
        lines.append("")
    render_device = machine.get("render_device", "unknown").splitlines()
    lines += [
        "## Machine and versions", "",
        (f"- CPU: {machine.get('cpu_model', machine.get('cpu', {}).get('brand_raw', 'unknown'))}, "
         f"{machine.get('logical_cpus')} logical CPUs; benchmark process {cores_txt}."),
        (f"- Render device: {render_device[0].removeprefix('GPU:').strip() if render_device else '?'}"
         f" (Mesa lavapipe {machine.get('mesa_vulkan_drivers', '?')}, CPU Vulkan); no GPU."),
        (f"- OS: {machine.get('system')} {machine.get('release')}; Python "
         f"{machine.get('python_implementation')} {machine.get('python_version')}."),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        ("- Machine load (other processes may share it, so read the ratios first): "
         + ("busy fraction of each CPU over each run, ours included: "
            + "; ".join(", ".join(f"CPU {cpu} {frac:.0%}" for cpu, frac in busy.items())
                        for busy in busy_runs if busy) + "; "
            if any(busy_runs) else "")
         + "1-min load average at the end of each run: "
         + ", ".join(f"{v:.2f}" for v in loads if v is not None) + "."),
        f"- Date: {started} (UTC), {len(results)} run(s).",
        "",
        "## Reproduce", "",
        "```bash",
        command,
        "# or only the benchmarks, without writing this file:",
        ".venv/bin/python -m pytest benchmarks --benchmark-only",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="pytest runs (default 3)")
    parser.add_argument("--cpus", default=None,
                        help="CPUs to pin to, e.g. 0 or 0,1 or all (default: $AEM_BENCH_CPUS or 0)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--keep-json", type=Path, default=None,
                        help="directory to keep pytest-benchmark's JSON files in")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile breakdown")
    parser.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile_child:
        profile_child()
        return 0

    env = dict(os.environ)
    if args.cpus is not None:
        env["AEM_BENCH_CPUS"] = args.cpus
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    results = run_benchmarks(args.runs, env, args.keep_json)
    profile = None if args.no_profile else run_profile(env)
    summary = summarise(results)
    interleaved = summarise_interleaved(results)

    command = ".venv/bin/python benchmarks/report.py"
    if args.runs != 3:
        command += f" --runs {args.runs}"
    if args.cpus is not None:
        command += f" --cpus {args.cpus}"
    text = render_markdown(summary, interleaved, results, profile, command, started)
    args.out.write_text(with_policy_latency(text, args.out))
    print(f"[report] wrote {args.out}")
    for name, row in summary.items():
        print(f"  {name:34s} {row['wall_ms']:8.2f} ms  {1e3 / row['wall_ms']:7.0f} steps/s  "
              f"ratio {_fmt_ratio(row['ratio_wall'])}  cpu {row['cpu_ms']:.2f} ms")
    if interleaved:
        print(f"  interleaved: AEM {interleaved['aem_ms_median']:.2f} ms, PickCube "
              f"{interleaved['pickcube_ms_median']:.2f} ms, per-round ratio "
              f"{interleaved['ratio_median_per_round']:.1f}x")
    return 0


def with_policy_latency(text: str, out: Path) -> str:
    """``text`` followed by the section ``policy_latency.py`` keeps in ``out``, if there is one:
    the two scripts measure different things and write one file."""
    from policy_latency import BEGIN, END  # beside this script; imported here as it loads torch

    current = out.read_text() if out.is_file() else ""
    start, end = current.find(BEGIN), current.find(END)
    if start < 0 or end < 0:
        return text
    return text.rstrip() + "\n\n" + current[start:end + len(END)] + "\n"


if __name__ == "__main__":
    sys.exit(main())
