"""Bad input to every command: refused before any work, in one line that names the argument.

Each case runs the command in-process in an empty working folder holding a few decoys (a file, a
folder, a checkpoint, results of an earlier run) and checks: exit code 2, exactly one line on
stderr, ``aem-bench CMD: error: ARGUMENT...``, no traceback, and no file made, changed or removed,
neither there nor in the package's own tables. A file that passes the checks and is found
unusable once read is refused the same way, in a line naming it. What is not bad input is not
reported as such: an exception of another class than aem-bench's own is a bug's and keeps its
traceback, and an expert that solves too few seeds stops the command with exit code 1.
"""

import json
from pathlib import Path

import pytest

from aem_bench.certify import certificates_file
from aem_bench.cli import main
from aem_bench.registration import expert_success_file
from aem_bench.tasks import METADATA_FILE

READ_ONLY = "/proc/aem-bench-test"  # nothing can be made under /proc, not even by root

# (command line, the argument the error names, more text the line must hold). In the command
# line: {file} an ordinary file, {dir} an empty folder, {demos} a demonstrations file, {ckpt} a
# policy checkpoint, {aem} an AEM pretraining checkpoint, {result} a results file, {cert} a
# certification run's folder, {run} a pipeline run's folder, {stale} an episode log of another
# checkpoint, {ro} a read-only place.
CASES = [
    # expert
    ("expert --task HandoverBlock-v0", "--task", "AEM/HandoverBlock-v0"),
    ("expert --task AEM/NoSuchTask-v0", "--task", "registered task id"),
    ("expert --episodes 0", "--episodes", "at least 1"),
    ("expert --episodes -1", "--episodes", "'-1'"),
    ("expert --seed -1", "--seed", "at least 0"),
    ("expert --video-size 0", "--video-size", "at least 1"),
    ("expert --video {file}", "--video", "is a file; expected a folder"),
    # demos
    ("demos --task ClickBell-v0 --out {dir}/d.h5", "--task", "AEM/ClickBell-v0"),
    ("demos --episodes 0 --out {dir}/d.h5", "--episodes", "at least 1"),
    ("demos --episodes -1 --out {dir}/d.h5", "--episodes", "at least 1"),
    ("demos --seed -3 --out {dir}/d.h5", "--seed", "at least 0"),
    ("demos --camera 0 --out {dir}/d.h5", "--camera", "at least 1"),
    ("demos --out {dir}", "--out", "is a folder; expected a file"),
    ("demos --out {file}/d.h5", "--out", "is a file"),
    ("demos --out {ro}/d.h5", "--out", "read-only"),
    ("demos --out {demos}", "--out", "--overwrite"),
    # train
    ("train --demos {dir} --out {dir}/c", "--demos", "is a folder; expected a file"),
    ("train --demos {dir}/missing.h5 --out {dir}/c", "--demos", "no such file"),
    ("train --demos {demos} --out {dir}/c --steps 0", "--steps", "at least 1"),
    ("train --demos {demos} --out {dir}/c --batch-size 0", "--batch-size", "at least 1"),
    ("train --demos {demos} --out {dir}/c --save-every 0", "--save-every", "at least 1"),
    ("train --demos {demos} --out {dir}/c --seed -1", "--seed", "at least 0"),
    ("train --demos {demos} --out {dir}/c --threads 0", "--threads", "at least 1"),
    ("train --demos {demos} --out {dir}/c --config [1]", "--config", "JSON object"),
    ("train --demos {demos} --out {dir}/c --config {{nope", "--config", "not JSON"),
    ('train --demos {demos} --out {dir}/c --config {{"lr":"fast"}}', "--config", "'lr'"),
    ('train --demos {demos} --out {dir}/c --config {{"num_inference_steps":2.5}}', "--config",
     "int"),
    ('train --demos {demos} --out {dir}/c --config {{"nope":1}}', "--config", "unknown key"),
    ("train --demos {demos} --out {dir}/c --ablation full", "--ablation", "AEM policies"),
    ("train --policy aem-dp --demos {demos} --out {dir}/c --ablation nope", "--ablation",
     "unknown AEM ablation 'nope'"),
    ("train --policy singleframe-pd --demos {demos} --out {dir}/c", "--policy",
     "singleframe-dp"),
    ("train --demos {demos} --out {file}", "--out", "is a file; expected a folder"),
    ("train --demos {demos} --out {ro}/c", "--out", "read-only"),
    ("train --demos {demos} --out {ckpt}", "--out", "--overwrite"),
    ("train --demos {demos} --out {ckpt} --resume --overwrite", "--overwrite", "not both"),
    # pretrain
    ("pretrain --demos {demos} --out {dir}/a --steps 0", "--steps", "at least 1"),
    ("pretrain --demos {demos} --out {dir}/a --config [1]", "--config", "JSON object"),
    ('pretrain --demos {demos} --out {dir}/a --config {{"mask_ratio":"half"}}', "--config",
     "'mask_ratio'"),
    ("pretrain --demos {demos} --out {dir}/a --ablation nope", "--ablation", "nope"),
    ("pretrain --demos {demos} --out {aem}", "--out", "--overwrite"),
    # probe
    ("probe --policy {dir}/none --demos {demos}", "--policy", "no such checkpoint folder"),
    ("probe --policy {ckpt} --demos {dir}", "--demos", "is a folder; expected a file"),
    ("probe --policy {ckpt} --demos {demos} --folds 1", "--folds", "at least 2"),
    ("probe --policy {ckpt} --demos {demos} --seed -1", "--seed", "at least 0"),
    ("probe --policy {ckpt} --demos {demos} --out {file}", "--out", "is a file"),
    ("probe --policy {ckpt} --demos {demos} --out {ro}/p", "--out", "read-only"),
    # eval
    ("eval --policy {file}", "--policy", "is a file; expected a checkpoint folder"),
    ("eval --policy {dir}/missing", "--policy", "no such checkpoint folder"),
    ("eval --policy {aem}", "--policy", "AEM pretraining checkpoint"),
    ("eval --policy {ckpt} --task HandoverBlock-v0", "--task", "AEM/HandoverBlock-v0"),
    ("eval --policy {ckpt} --episodes 0", "--episodes", "at least 1"),
    ("eval --policy {ckpt} --seed -1", "--seed", "at least 0"),
    ("eval --policy {ckpt} --workers 0", "--workers", "at least 1"),
    ("eval --policy {ckpt} --variant clean", "--variant", "--suite"),
    ("eval --policy {ckpt} --task AEM/ClickBell-v0 --suite memory", "--suite", "not both"),
    ("eval --policy {ckpt} --out {result}", "--out", "--overwrite"),
    ("eval --policy {ckpt} --out {dir}", "--out", "is a folder; expected a file"),
    ("eval --policy {ckpt} --out {ro}/r.json", "--out", "read-only"),
    ("eval --policy {ckpt} --task AEM/ClickBell-v0 --task AEM/LiftPot-v0 --out {dir}/r.json",
     "--out", "one results file"),
    ("eval --policy {ckpt} --suite memory --log {dir}/l.jsonl", "--log", "one task"),
    ("eval --policy {ckpt} --video-seed 100000", "--video-seed", "--video"),
    ("eval --policy {ckpt} --address ray://head:10001", "--address", "--backend ray"),
    ("eval --policy {ckpt} --video {file}", "--video", "is a file; expected a folder"),
    ("eval --policy {ckpt} --log {stale}", "--log", "another checkpoint"),
    # tasks
    ("tasks --ids AEM/ClickBell-v0", "--ids", "--measure"),
    ("tasks --episodes 0", "--episodes", "--measure"),
    ("tasks --measure", "--measure", "--record"),
    ("tasks --measure --ids ClickBell-v0 --out {dir}/e.json", "--ids", "AEM/ClickBell-v0"),
    ("tasks --measure --episodes 0 --out {dir}/e.json", "--episodes", "at least 1"),
    ("tasks --measure --out {result}", "--out", "--overwrite"),
    ("tasks --pairs 3", "--pairs", "--measure-blind"),
    ("tasks --measure --measure-blind", "--measure-blind", "not both"),
    ("tasks --measure-blind --episodes 3", "--episodes", "not --measure-blind"),
    ("tasks --measure-blind --record", "--record", "not --measure-blind"),
    ("tasks --measure-blind --pairs 0", "--pairs", "at least 1"),
    ("tasks --measure-blind --pairs 491", "--pairs", "at most 490"),
    ("tasks --measure --pairs 0 --out {dir}/e.json", "--pairs", "at least 1"),
    ("tasks --measure-blind --ids ClickBell-v0", "--ids", "AEM/ClickBell-v0"),
    ("tasks --measure-blind --out {result}", "--out", "--overwrite"),
    ("tasks --write-metadata --json", "--json", "--write-metadata"),
    ("tasks --write-metadata {dir}", "--write-metadata", "is a folder; expected a file"),
    # body-leak
    ("body-leak --tasks AEM/ClickBell-v0", "--tasks", "memory task"),
    ("body-leak --tasks ShellGame-v0", "--tasks", "AEM/ShellGame-v0"),
    ("body-leak --tasks", "--tasks", "at least one"),
    ("body-leak --folds 1", "--folds", "at least 2"),
    ("body-leak --episodes 9", "--episodes", "at least 2 * --folds"),
    ("body-leak --first-seed -1", "--first-seed", "at least 0"),
    ("body-leak --resolution 0", "--resolution", "a positive step"),
    ("body-leak --out {dir}", "--out", "is a folder; expected a file"),
    ("body-leak --out {result}", "--out", "--overwrite"),
    # gallery
    ("gallery --tasks ClickBel-v0", "--tasks", "AEM/ClickBell-v0"),
    ("gallery --tasks AEM/ClickBell-Cluttered-v0", "--tasks", "AEM/ClickBell-v0"),
    ("gallery --memory --tasks AEM/ClickBell-v0", "--memory", "--tasks"),
    ("gallery --size 0", "--size", "at least 1"),
    ("gallery --out {dir}", "--out", "is a folder; expected a file"),
    ("gallery --out {dir}/g.foo", "--out", "image file"),
    # certify
    ("certify --task AEM/HandoverBlock-v0", "--task", "memory task"),
    ("certify --task ShellGame-v0", "--task", "AEM/ShellGame-v0"),
    ("certify --task AEM/ShellGame-v0 --demos 0 --out {dir}/w", "--demos", "at least 1"),
    ("certify --task AEM/ShellGame-v0 --train-steps 0 --out {dir}/w", "--train-steps",
     "at least 1"),
    ("certify --task AEM/ShellGame-v0 --episodes -2 --out {dir}/w", "--episodes", "at least 1"),
    ("certify --task AEM/ShellGame-v0 --out {file}", "--out", "is a file; expected a folder"),
    ("certify --task AEM/ShellGame-v0 --out {cert}", "--out", "--overwrite"),
    # pipeline
    ("pipeline --demos 0 --out {dir}/p", "--demos", "at least 1"),
    ("pipeline --eval-episodes 0 --out {dir}/p", "--eval-episodes", "at least 1"),
    ("pipeline --train-steps -5 --out {dir}/p", "--train-steps", "at least 1"),
    ("pipeline --task HandoverBlock --out {dir}/p", "--task", "AEM/HandoverBlock-v0"),
    ("pipeline --policy aem-dp --out {dir}/p", "--policy", "singleframe-dp"),
    ("pipeline --out {run}", "--out", "--overwrite"),
    # submit
    ("submit --encoder no_such_encoder --protocol smoke --cache {dir}/s", "--encoder",
     "unknown encoder"),
    ("submit --encoder resnet --options [1] --protocol smoke --cache {dir}/s", "--options",
     "JSON object"),
    ("submit --encoder resnet --options {{nope --protocol smoke --cache {dir}/s", "--options",
     "not JSON"),
    ("submit --encoder resnet --protocol smoke --cache {file}", "--cache", "expected a folder"),
    ("submit --encoder resnet --protocol smoke --out {dir}/s", "--out", "--cache"),
    # leaderboard
    ("leaderboard --results {dir}/missing --out {dir}/L.md", "--results", "no such folder"),
    ("leaderboard --results {file} --out {dir}/L.md", "--results", "expected a folder"),
    ("leaderboard --results {dir} --out {dir}", "--out", "is a folder; expected a file"),
    # sweep
    ("sweep --rows no-such-row --cache {dir}/c --results-dir {dir}/r --dry-run", "--rows",
     "no-such-row"),
    (("sweep --protocol certificate-budget --tasks AEM/HandoverBlock-v0 --rows singleframe-dp "
      "--cache {dir}/c --results-dir {dir}/r --dry-run"), "--tasks",
     "AEM/HandoverBlock-v0 has no budget"),
]

# A file or folder that passes the argument checks and is found unusable once read: (command
# line, more text the line must hold besides the file's name, the file as the line names it).
FILE_CASES = [
    ("eval --policy {ckpt}", "not a readable safetensors file", "{ckpt}/model.safetensors"),
    ("train --demos {demos} --out {dir}/c", "not a readable HDF5 file", "{demos}"),
    ("leaderboard --results {cert} --out {dir}/L.md", "field", "{cert}/certificate.json"),
    ("certify --task AEM/ShellGame-v0 --out {dir}/c --from-results {file} {result}",
     "not valid JSON", "{file}"),
    ("certify --task AEM/ShellGame-v0 --out {dir}/c --from-results {result} {result}",
     "field 'policy' is missing", "{result}"),
]


def _snapshot(root: Path) -> dict[str, tuple]:
    return {str(path.relative_to(root)): (path.is_dir(), None if path.is_dir()
                                          else path.read_bytes())
            for path in sorted(root.rglob("*"))}


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> dict[str, str]:
    """The decoys, in a working folder of their own (default outputs such as runs/ land there)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("not what any command wants\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "demos.h5").write_bytes(b"an earlier recording")
    for name, policy_type in (("ckpt", "singleframe-dp"), ("aem", "aem-pretrain")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(
            {"format_version": 3, "policy_type": policy_type}))
        (tmp_path / name / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "ckpt" / "eval").mkdir()
    (tmp_path / "ckpt" / "eval" / "old.jsonl").write_text('{"header": {}}\n')
    (tmp_path / "result.json").write_text('{"an": "earlier result"}\n')
    (tmp_path / "stale.jsonl").write_text('{"header": {"checkpoint_digest": "0123"}}\n')
    (tmp_path / "cert").mkdir()
    (tmp_path / "cert" / "certificate.json").write_text('{"an": "earlier certificate"}\n')
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "demos.h5").write_bytes(b"an earlier pipeline's recording")
    return {"file": str(tmp_path / "file.txt"), "dir": str(tmp_path / "empty"),
            "demos": str(tmp_path / "demos.h5"), "ckpt": str(tmp_path / "ckpt"),
            "aem": str(tmp_path / "aem"), "result": str(tmp_path / "result.json"),
            "cert": str(tmp_path / "cert"), "run": str(tmp_path / "run"), "ro": READ_ONLY,
            "stale": str(tmp_path / "stale.jsonl")}


@pytest.mark.parametrize(("line", "argument", "says"), CASES,
                         ids=[f"{i:02d}-{case[0].split()[0]}" for i, case in enumerate(CASES)])
def test_bad_input_is_refused_in_one_line_before_any_work(line, argument, says, workdir,
                                                          tmp_path, capsys):
    command = line.split()[0]
    argv = [part.format(**workdir) for part in line.split()]
    before = _snapshot(tmp_path)
    tables = {path: path.read_bytes() for path in (certificates_file(), expert_success_file(),
                                                    METADATA_FILE) if path.is_file()}
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert captured.err.startswith(f"aem-bench {command}: error: {argument}"), captured.err
    assert says in captured.err, captured.err
    assert _snapshot(tmp_path) == before  # nothing made, changed or removed
    assert {path: path.read_bytes() for path in tables} == tables


@pytest.mark.parametrize(("line", "says", "names"), FILE_CASES,
                         ids=[case[0].split()[0] for case in FILE_CASES])
def test_an_unusable_file_is_refused_in_one_line_naming_it(line, says, names, workdir, tmp_path,
                                                           capsys):
    command = line.split()[0]
    before = _snapshot(tmp_path)
    code = main([part.format(**workdir) for part in line.split()])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert captured.err.startswith(f"aem-bench {command}: error: "), captured.err
    assert names.format(**workdir) in captured.err and says in captured.err, captured.err
    assert _snapshot(tmp_path) == before


def test_an_unknown_protocol_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as refused:
        main(["sweep", "--protocol", "no-such-protocol", "--dry-run"])
    assert refused.value.code == 2
    assert "argument --protocol: invalid choice: 'no-such-protocol'" in capsys.readouterr().err


@pytest.mark.parametrize("error", [ValueError, KeyError, FileNotFoundError])
def test_an_error_of_another_class_is_a_bug_not_bad_input(error, workdir, monkeypatch, capsys):
    """Only aem-bench's own errors are the user's: any other exception a command meets, a plain
    ValueError included, reaches the caller with its traceback instead of exit code 2."""
    import aem_bench.leaderboard.publish

    def write_leaderboard(results_dir, out_path, protocol=None):
        raise error("a bug in the leaderboard")

    monkeypatch.setattr(aem_bench.leaderboard.publish, "write_leaderboard", write_leaderboard)
    with pytest.raises(error, match="a bug in the leaderboard"):
        main(["leaderboard", "--results", workdir["dir"], "--out", workdir["dir"] + "/L.md"])
    assert capsys.readouterr().err == ""


def test_an_expert_that_solves_too_few_seeds_stops_the_command(workdir, monkeypatch, capsys):
    """Neither bad input nor a bug: one line, exit code 1."""
    import aem_bench.expert

    def record_demos(env_id, episodes, out, **kwargs):
        raise aem_bench.expert.ExpertShortfall(f"the expert of {env_id} solved only 1 of seeds "
                                               f"0-13, not the {episodes} asked for")

    monkeypatch.setattr(aem_bench.expert, "record_demos", record_demos)
    assert main(["demos", "--episodes", "2", "--out", workdir["dir"] + "/d.h5"]) == 1
    err = capsys.readouterr().err
    assert err == ("aem-bench demos: stopped: the expert of AEM/HandoverBlock-v0 solved only 1 "
                   "of seeds 0-13, not the 2 asked for\n")


@pytest.mark.parametrize("line", [
    "demos --out {demos}",
    "train --demos {demos} --out {ckpt}",
    "eval --policy {ckpt} --out {result}",
    "certify --task AEM/ShellGame-v0 --out {cert}",
])
def test_certify_demos_train_and_eval_refuse_to_clobber(line, workdir, tmp_path, capsys):
    before = _snapshot(tmp_path)
    assert main([part.format(**workdir) for part in line.split()]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


def test_an_unknown_task_names_the_closest_ids(capsys):
    assert main(["expert", "--task", "AEM/HandoverBlok-v0"]) == 2
    err = capsys.readouterr().err
    assert "did you mean AEM/HandoverBlock-v0" in err


def test_submit_names_its_own_option_for_offline_weights(tmp_path, capsys):
    """The weights hint is the training command's (--config) unless submit rewrites it."""
    assert main(["submit", "--encoder", "dinov2", "--protocol", "smoke",
                 "--cache", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no pretrained weights" in err
    assert """--options '{"weights": "/path/to/file"}'""" in err and "--config" not in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(("line", "module", "table", "work"), [
    ("certify --task AEM/ShellGame-v0 --out {dir}/c --record", "aem_bench.certify",
     "certificates_file", "aem_bench.certify.certify"),
    ("tasks --measure --record --ids AEM/ClickBell-v0", "aem_bench.registration",
     "expert_success_file", "aem_bench.expert.expert_rollouts"),
])
def test_a_damaged_package_table_is_named_before_any_work(line, module, table, work, workdir,
                                                          tmp_path, monkeypatch, capsys):
    """The tables that --record merges into (a run killed while writing one leaves it cut
    short): named, with how to restore it, before anything is measured."""
    import importlib

    damaged = tmp_path / "table.json"
    damaged.write_text('{"AEM/ShellGame-v0": {"task": "AEM/Shell')
    monkeypatch.setattr(importlib.import_module(module), table, lambda: damaged)

    def started(*args, **kwargs):
        raise AssertionError("the work started before the damaged table was named")

    monkeypatch.setattr(work, started)
    before = _snapshot(tmp_path)
    assert main([part.format(**workdir) for part in line.split()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"error: {damaged}: damaged (cut short" in err and "restore it (git checkout" in err
    assert _snapshot(tmp_path) == before
