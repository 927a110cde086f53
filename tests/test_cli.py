"""The command line end to end on a tiny budget: expert, demos, train, eval, leaderboard."""

import argparse
import json
import re
import shlex
import subprocess
import sys

import pytest

from aem_bench.cli import build_parser, main
from aem_bench.stats import clopper_pearson_interval, wilson_interval

TASK = "AEM/HandoverBlock-v0"


def test_expert_json(capsys):
    assert main(["expert", "--task", TASK, "--episodes", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    demos, checkpoint = root / "demos.h5", root / "ckpt"
    assert main(["demos", "--task", TASK, "--episodes", "2", "--out", str(demos)]) == 0
    assert main(["train", "--demos", str(demos), "--out", str(checkpoint), "--steps", "2",
                 "--batch-size", "8"]) == 0
    return root, checkpoint


def test_train_writes_a_checkpoint(trained):
    _, checkpoint = trained
    assert (checkpoint / "config.json").is_file() and (checkpoint / "model.safetensors").is_file()
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["policy_type"] == "singleframe-dp"


@pytest.mark.slow
def test_two_episode_evaluation_and_leaderboard(trained, capsys):
    root, checkpoint = trained
    results = root / "results"
    out = results / "tiny.json"
    assert main(["eval", "--policy", str(checkpoint), "--task", TASK, "--episodes", "2",
                 "--json", "--out", str(out), "--name", "tiny-dp",
                 "--interval", "clopper-pearson"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and summary["seeds"] == [100_000, 100_001]
    lo, hi = summary["success_ci95"]
    assert 0.0 <= lo <= summary["success_rate"] <= hi <= 1.0
    # The interval asked for is printed; the results file keeps the Wilson one.
    successes = summary["successes"]
    assert summary["interval"] == {"method": "clopper-pearson",
                                   "ci95": list(clopper_pearson_interval(successes, 2))}
    assert json.loads(out.read_text())["success_ci95"] == list(wilson_interval(successes, 2))
    assert summary["latency_ms"]["median"] > 0
    assert 0 < summary["encoder_latency_ms"]["median"] <= summary["latency_ms"]["p95"]
    assert (summary["encoder"], summary["head"]) == ("singleframe", "dp")
    assert summary["peak_rss_mb"] > 100 and summary["episodes_per_hour"] > 0
    assert json.loads(out.read_text())["policy"] == "tiny-dp"
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == 1 + 2  # header, episodes

    # Two worker processes, each with its own policy and task: the same episodes.
    parallel = root / "parallel.json"
    assert main(["eval", "--policy", str(checkpoint), "--task", TASK, "--episodes", "2",
                 "--json", "--out", str(parallel), "--name", "tiny-dp", "--workers", "2"]) == 0
    capsys.readouterr()
    records = [(r["seed"], r["success"], r["steps"])
               for r in json.loads(parallel.read_text())["records"]]
    assert records == [(r["seed"], r["success"], r["steps"])
                       for r in json.loads(out.read_text())["records"]]
    parallel.unlink()  # one result per policy and task in the leaderboard

    table_path = root / "LEADERBOARD.md"
    assert main(["leaderboard", "--results", str(results), "--out", str(table_path)]) == 0
    table = table_path.read_text()
    assert "tiny-dp" in table and TASK in table


def test_train_over_a_checkpoint_needs_overwrite_which_drops_its_evaluations(trained, tmp_path,
                                                                          capsys):
    root, _ = trained
    checkpoint = tmp_path / "ckpt"
    command = ["train", "--demos", str(root / "demos.h5"), "--out", str(checkpoint), "--steps",
               "2", "--batch-size", "8"]
    assert main(command) == 0
    (checkpoint / "eval").mkdir()
    (checkpoint / "eval" / "old.jsonl").write_text('{"header": {}}\n')  # the old model's
    weights = (checkpoint / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(command) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (checkpoint / "model.safetensors").read_bytes() == weights
    assert main([*command, "--overwrite", "--seed", "1"]) == 0
    assert not (checkpoint / "eval").exists()
    assert (checkpoint / "model.safetensors").read_bytes() != weights


@pytest.mark.slow
def test_episodes_that_errored_are_reported_and_all_of_them_fail_the_run(trained, tmp_path,
                                                                        monkeypatch, capsys):
    from aem_bench.evaluator import EpisodeRecord, backends

    _, checkpoint = trained
    real = backends.run_episode

    def crash(env, policy, seed, video=None):
        return EpisodeRecord(seed, False, 0, 0.0, [], "step 0: environment crashed: "
                             "RuntimeError('boom')")

    monkeypatch.setattr(backends, "run_episode", crash)
    out = tmp_path / "all.json"
    assert main(["eval", "--policy", str(checkpoint), "--task", TASK, "--episodes", "2",
                 "--json", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "all 2 episodes errored" in err and "boom" in err and err.count("\n") == 1
    assert not out.exists()  # 0% of nothing that ran is not a result

    monkeypatch.setattr(backends, "run_episode", lambda env, policy, seed, video=None: (
        crash(env, policy, seed) if seed == 100_000 else real(env, policy, seed, video)))
    out = tmp_path / "some.json"
    assert main(["eval", "--policy", str(checkpoint), "--task", TASK, "--episodes", "2",
                 "--json", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 of 2 episodes errored" in err and "boom" in err
    assert json.loads(out.read_text())["errors"] == 1


@pytest.mark.slow
def test_two_tasks_give_a_results_file_each_an_aggregate_and_videos(trained, tmp_path, capsys):
    _, checkpoint = trained
    tasks = ["AEM/ClickBell-v0", "AEM/ObserveAndPickup-v0"]
    assert main(["eval", "--policy", str(checkpoint), "--task", tasks[0], "--task", tasks[1],
                 "--episodes", "2", "--results-dir", str(tmp_path), "--json",
                 "--video", str(tmp_path / "videos"), "--video-format", "mp4"]) == 0
    capsys.readouterr()
    for task in tasks:
        stem = task.replace("/", "_")
        assert json.loads((tmp_path / f"{stem}_2ep_seed100000.json").read_text())["task"] == task
        assert (tmp_path / "videos" / f"{stem}_seed100000.mp4").stat().st_size > 0
    aggregate = json.loads((tmp_path / "aggregates" / "tasks_2ep_seed100000.json").read_text())
    assert aggregate["tasks"] == tasks and aggregate["episodes_per_task"] == 2
    assert aggregate["mean_ci95"][0] <= aggregate["mean"] <= aggregate["mean_ci95"][1]


def test_eval_interval_is_wilson_unless_named_and_refuses_an_unknown_name(capsys):
    assert build_parser().parse_args(["eval", "--policy", "ckpt"]).interval == "wilson"
    args = build_parser().parse_args(["eval", "--policy", "ckpt", "--interval", "clopper-pearson"])
    assert args.interval == "clopper-pearson"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--policy", "ckpt", "--interval", "exact"])
    assert "invalid choice: 'exact' (choose from 'wilson', 'clopper-pearson')" in (
        capsys.readouterr().err)


def test_a_suite_and_variant_name_their_tasks():
    from argparse import Namespace

    from aem_bench.cli.evaluation import _eval_tasks
    from aem_bench.registration import TASKS

    memory = _eval_tasks(Namespace(task=None, suite="memory", variant=["cluttered"]))
    assert len(memory) == 10 and all(TASKS[i].scene == "cluttered" for i in memory)
    assert all(TASKS[i].memory for i in memory)
    # a newer version replaces the old one in the suite; the old id stays registered
    assert "AEM/PutBackBlock-Cluttered-v1" in memory
    assert "AEM/PutBackBlock-Cluttered-v0" not in memory
    assert TASKS["AEM/PutBackBlock-Cluttered-v0"].superseded_by == "AEM/PutBackBlock-Cluttered-v1"
    assert "AEM/SwapBlocks-Cluttered-v1" in memory
    assert "AEM/SwapBlocks-Cluttered-v0" not in memory
    assert TASKS["AEM/SwapBlocks-Cluttered-v0"].superseded_by == "AEM/SwapBlocks-Cluttered-v1"
    everything = _eval_tasks(Namespace(task=None, suite="all", variant=None))
    assert len(everything) == 22 and all(TASKS[i].scene == "clean" for i in everything)
    assert _eval_tasks(Namespace(task=None, suite=None, variant=None)) == [TASK]
    with pytest.raises(ValueError, match="--task or --suite"):
        _eval_tasks(Namespace(task=[TASK], suite="memory", variant=None))


def test_bad_input_gives_one_clear_line(tmp_path, capsys):
    assert main(["eval", "--policy", str(tmp_path / "missing"), "--episodes", "1"]) == 2
    assert "missing" in capsys.readouterr().err
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not hdf5")
    assert main(["train", "--demos", str(broken), "--out", str(tmp_path / "c"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "broken.h5" in err and "not a readable HDF5 file" in err


def test_tasks_lists_every_id_with_metadata(capsys):
    from aem_bench.registration import TASKS

    assert main(["tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["id"] for row in rows} == set(TASKS)
    handover = next(row for row in rows if row["id"] == TASK)
    assert handover["arms"] == 2 and handover["max_episode_steps"] == 400
    assert handover["scene"] == "clean" and "handover" in handover["skills"]
    assert main(["tasks", "--memory", "--json"]) == 0
    assert all(row["memory"] for row in json.loads(capsys.readouterr().out))


@pytest.mark.slow
def test_gallery_is_a_grid_of_tasks_by_scene(tmp_path):
    from PIL import Image

    out = tmp_path / "gallery.png"
    assert main(["gallery", "--tasks", TASK, "AEM/ClickBell-v0", "--size", "64",
                 "--out", str(out)]) == 0
    sheet = Image.open(out)
    assert sheet.height > 2 * 64 and sheet.width > 3 * 64  # 2 rows, 3 scene columns


def test_gallery_refuses_a_variant_id(capsys):
    assert main(["gallery", "--tasks", "AEM/ClickBell-Cluttered-v0"]) == 2
    assert "scene variant" in capsys.readouterr().err


def test_expert_video_is_an_animated_gif(tmp_path):
    from PIL import Image

    assert main(["expert", "--task", "AEM/ClickBell-v0", "--episodes", "1", "--json",
                 "--video", str(tmp_path), "--video-size", "64"]) == 0
    gif = Image.open(tmp_path / "ClickBell-v0_seed0.gif")
    assert gif.n_frames > 20 and gif.size == (64, 64)


@pytest.mark.slow
def test_pipeline_runs_every_stage_on_a_tiny_budget(tmp_path):
    """The pipeline at 2 demos, 5 steps and 1 episode (the numbers mean nothing)."""
    out = tmp_path / "demo"
    assert main(["pipeline", "--out", str(out), "--demos", "2", "--train-steps", "5",
                 "--eval-episodes", "1"]) == 0
    assert (out / "checkpoint" / "model.safetensors").is_file()
    assert len(list((out / "videos").glob("*.gif"))) == 1  # of the one episode
    assert "singleframe-dp (2 demos, 5 steps)" in (out / "LEADERBOARD.md").read_text()


def test_tasks_measure_blind_replay(tmp_path, capsys):
    """`--measure-blind` prints each task's blind-replay rate; `--measure --pairs N` adds it to
    the expert's measured entry, which stays as it was without --pairs."""
    assert main(["tasks", "--measure-blind", "--ids", TASK, "--pairs", "2", "--json"]) == 0
    blind = json.loads(capsys.readouterr().out)[TASK]
    assert blind["pairs"] == 2 and blind["successes"] == 0 and blind["replay_seeds"] == [1000, 1001]
    out = tmp_path / "e.json"
    assert main(["tasks", "--measure", "--ids", "AEM/ClickBell-v0", "--episodes", "2",
                 "--pairs", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["AEM/ClickBell-v0"]["blind_replay"]["pairs"] == 2
    assert main(["tasks", "--measure", "--ids", "AEM/ClickBell-v0", "--episodes", "2",
                 "--out", str(out), "--overwrite"]) == 0
    assert "blind_replay" not in json.loads(out.read_text())["AEM/ClickBell-v0"]


def test_help_lists_every_command_with_an_example_that_parses(capsys):
    parser = build_parser()
    commands = next(action.choices for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction))
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    examples = re.findall(r"^ +(aem-bench .+)$", capsys.readouterr().out, re.MULTILINE)
    assert [shlex.split(example)[1] for example in examples] == list(commands)
    for example in examples:  # every example is a command line the parser takes
        assert parser.parse_args(shlex.split(example)[1:]).func is not None
    run = subprocess.run([sys.executable, "-m", "aem_bench.cli", "--help"], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0 and examples[0] in run.stdout
