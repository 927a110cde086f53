"""aem-bench sweep: cells built from shared, cached stages, resumed, never trained twice."""

import dataclasses
import json
import os
import re
import sys
import threading
import time

import pytest

from aem_bench.cli import main
from aem_bench.errors import InputError
from aem_bench.recipe import Protocol, get_protocol
from aem_bench.sweep import (
    MATRIX_ROWS,
    ROWS,
    Cell,
    Row,
    Sweep,
    cell_state,
    cells,
    check_result,
    default_cache,
    run,
    spent_minutes,
    status_table,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ShellGame: a memory task with short episodes. A budget that exercises every stage in seconds.
TINY = Protocol(name="tiny", tasks=("AEM/ShellGame-v0",), demos=2, train_steps=2, batch_size=4,
                eval_episodes=1, corpus_episodes=2, pretrain_steps=2)
ROW_NAMES = ["singleframe-dp", "gru-dp", "aem-dp-episode-causal-finetune"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One sweep of three rows on ShellGame: (sweep, its cells, what it printed)."""
    root = tmp_path_factory.mktemp("sweep")
    sweep = Sweep(TINY, root / "cache", root / "results", progress=True)
    todo = cells(TINY, ROW_NAMES)
    assert [cell_state(sweep, cell) for cell in todo] == ["left"] * 3
    assert run(sweep, todo) == []
    return sweep, todo


def test_every_cell_writes_a_results_file_that_names_its_protocol_and_row(swept):
    sweep, todo = swept
    for cell in todo:
        result = json.loads(cell.results_file(sweep.results_dir, TINY).read_text())
        assert result["task"] == "AEM/ShellGame-v0" and result["episodes"] == 1
        assert result["training"]["row"] == cell.row.name
        assert result["training"]["protocol"]["name"] == "tiny"
        assert result["observations"] == ["rgb", "qpos"]
    assert {cell_state(sweep, cell) for cell in todo} == {"done"}


def test_memory_rows_build_on_the_single_frame_checkpoint_trained_once(swept):
    sweep, _ = swept
    task = sweep.task_dir("AEM/ShellGame-v0")
    sf = task / "singleframe-dp"
    log = (sf / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [2]  # one run of 2 steps, not three
    gru = json.loads((task / "gru-dp" / "config.json").read_text())
    assert gru["encoder_checkpoint"] == str(sf)
    aem = json.loads((task / "aem-dp-episode-causal-finetune" / "config.json").read_text())
    assert aem["aem_checkpoint"] == str(task / "aem-pre-episode-causal")
    assert aem["freeze_history"] is False
    pretraining = json.loads((task / "aem-pre-episode-causal" / "config.json").read_text())
    assert pretraining["encoder_checkpoint"] == str(sf)
    assert sorted(p.name for p in task.glob("*.h5")) == ["corpus.h5", "demos.h5"]


def test_a_second_run_redoes_nothing_and_a_lost_result_is_evaluated_again(swept, capsys):
    sweep, todo = swept
    results = [cell.results_file(sweep.results_dir, TINY).read_text() for cell in todo]
    assert run(sweep, todo) == []
    assert "training" not in capsys.readouterr().out
    lost = todo[1]
    path = lost.results_file(sweep.results_dir, TINY)
    path.unlink()
    assert run(sweep, todo) == []
    out = capsys.readouterr().out
    assert "training" not in out and "recording" not in out
    rerun, before = json.loads(path.read_text()), json.loads(results[1])
    assert rerun["records"] == before["records"]  # the episode log, resumed


def test_a_results_file_of_another_protocol_is_not_taken_for_the_cell(swept, tmp_path):
    sweep, todo = swept
    path = todo[0].results_file(sweep.results_dir, TINY)
    other = Protocol(name="tiny", tasks=TINY.tasks, demos=2, train_steps=2, batch_size=4,
                     eval_episodes=5)
    with pytest.raises(ValueError, match="holds 1 episodes"):
        check_result(path, other)


def test_the_dry_run_lists_cells_and_runs_nothing(tmp_path, capsys):
    assert main(["sweep", "--protocol", "certificate-budget", "--tasks", "AEM/ShellGame-v0",
                 "--rows", "singleframe-dp", "gru-dp", "--cache", str(tmp_path / "cache"),
                 "--results-dir", str(tmp_path / "results"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| gru-dp +\| AEM/ShellGame-v0 +\| left", out)
    assert "2 cells: 0 done" in out
    assert not (tmp_path / "cache").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize(("argv", "argument"), [
    (["--rows", "no-such-row"], "--rows"),
    (["--protocol", "standard", "--rows", "singleframe-dp-with-oracle", "--tasks",
      "AEM/ClickBell-v1"], "--rows"),
    (["--tasks", "AEM/ShellGam-v0"], "--tasks"),
    (["--scenes", "dusty"], "--scenes"),
    (["--workers", "0"], "--workers"),
    (["--demos", "0"], "--demos"),
    (["--address", "head:6379"], "--address"),
    (["--backend", "ray", "--address", "head:6379", "--cache", "runs/c"], "--cache"),
])
def test_bad_sweep_arguments_are_named(argv, argument, tmp_path, capsys):
    assert main(["sweep", "--cache", str(tmp_path / "c"), "--results-dir", str(tmp_path / "r"),
                 "--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert f"error: {argument}" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_the_fact_row_reads_the_fact_alone(tmp_path):
    """RememberColor3's fact is the shown colour (one of nine), not the slot the oracle gives:
    the demonstrations hold both, and the row's policy reads the fact and nothing else."""
    tiny = Protocol(name="tiny", tasks=("AEM/RememberColor3-v0",), demos=2, train_steps=2,
                    batch_size=4, eval_episodes=1)
    sweep = Sweep(tiny, tmp_path / "cache", tmp_path / "results", progress=False)
    [cell] = cells(tiny, ["singleframe-dp-with-fact"])
    assert cell.row.reads_oracle and run(sweep, [cell]) == []
    result = json.loads(cell.results_file(sweep.results_dir, tiny).read_text())
    assert result["observations"] == ["rgb", "qpos", "fact"]
    config = json.loads((sweep.task_dir(cell.task) / cell.row.name / "config.json").read_text())
    assert config["state_keys"] == ["qpos", "fact"] and config["state_dim"] == 16 + 9


def test_a_protocol_with_other_demos_is_named_apart():
    protocol = get_protocol("certificate-budget")
    more = protocol.with_demos(200)
    assert more.name == "certificate-budget-200demos" and more.policy_suffix == "-200demos"
    for task in protocol.tasks:
        assert more.budget(task) == (200, protocol.budget(task)[1])
    assert dataclasses.replace(more, name=protocol.name, demos=protocol.demos,
                               budgets=protocol.budgets, policy_suffix="") == protocol
    with pytest.raises(ValueError, match="demos must be at least 1"):
        protocol.with_demos(0)


def test_a_new_version_is_swept_at_its_certified_predecessors_budget(monkeypatch):
    from aem_bench import certify
    from aem_bench.registration import TASKS, current_tasks

    recorded = certify.load_certificates()
    assert recorded["AEM/SwapBlocks-v1"]["budget"]["demos"] == 100  # its own, as v0's
    # As before SwapBlocks-v1 had a certificate of its own: v0, which it supersedes, had one.
    certified = {task: entry for task, entry in recorded.items() if task != "AEM/SwapBlocks-v1"}
    monkeypatch.setattr(certify, "load_certificates", lambda: certified)
    protocol = get_protocol("certificate-budget")
    assert "AEM/SwapBlocks-v1" in protocol.tasks
    assert protocol.budget("AEM/SwapBlocks-v1") == protocol.budget("AEM/SwapBlocks-v0") \
        == (100, 8000)
    for task in set(protocol.tasks) - set(certified):  # each a new version of a certified task
        spec = TASKS[task]
        assert task in current_tasks() and spec.memory is not None and spec.scene == "clean"
        assert any(TASKS[old].superseded_by == task for old in certified)
    # Without v0's certificate v1 has no budget to inherit: it is not in the protocol.
    monkeypatch.setattr(certify, "load_certificates",
                        lambda: {task: entry for task, entry in certified.items()
                                 if task != "AEM/SwapBlocks-v0"})
    assert "AEM/SwapBlocks-v1" not in get_protocol("certificate-budget").tasks


# --- the standard protocol: both suites, one recipe, the memory cells shared -------------------
def test_standard_covers_both_suites_and_takes_the_memory_cells_of_the_certificates():
    from aem_bench.registration import current_tasks

    standard, certified = get_protocol("standard"), get_protocol("certificate-budget")
    suites = {task: spec for task, spec in current_tasks().items() if spec.scene == "clean"}
    assert set(standard.tasks) == set(suites)  # every current task, none superseded
    assert (standard.eval_episodes, standard.eval_seed) == (100, 100_000)
    assert standard.scenes == ("clean", "randomized")
    for task, spec in suites.items():
        home = standard.home(task)
        if spec.memory is None:
            assert home is standard and standard.budget(task) == (50, 2000)
        else:  # the certificate's budget: the very cells of certificate-budget
            assert home == certified and standard.budget(task) == certified.budget(task)
            assert standard.cell_recipe(task) == certified.cell_recipe(task)
    # A variant with other demonstrations makes cells of its own.
    more = standard.with_demos(200)
    assert more.home("AEM/ShellGame-v0") is more


def test_a_shared_cell_is_made_and_named_by_its_home_protocol(tmp_path):
    standard = get_protocol("standard")
    sweep = Sweep(standard, default_cache(standard), tmp_path / "results")
    shell, handover = "AEM/ShellGame-v0", "AEM/HandoverBlock-v0"
    home = sweep.for_task(shell)
    assert home.protocol.name == "certificate-budget"
    assert home.cache == default_cache(home.protocol)  # runs/sweep/certificate-budget
    assert sweep.for_task(handover) is sweep
    cell = Cell(ROWS["gru-dp"], shell, "clean")
    assert cell.results_file(home.results_dir, home.protocol).name == \
        "gru-dp_ShellGame-v0_certificate-budget.json"
    # A cache of one's own holds the shared cells too: nothing lands outside it.
    own = Sweep(standard, tmp_path / "cache", tmp_path / "results")
    assert own.for_task(shell).cache == tmp_path / "cache"
    # Without --rows: each suite's matrix rows; the memory cells in their home's scenes.
    made = cells(standard, tasks=[handover, shell])
    assert {(c.row.name, c.task, c.scene) for c in made} == {
        *((row, handover, scene) for row in MATRIX_ROWS["manipulation"]
          for scene in ("clean", "randomized")),
        *((row, shell, "clean") for row in MATRIX_ROWS["memory"])}
    names = [c.row.name for c in made]
    assert names.index("singleframe-dp") < names.index("gru-dp")  # what others build on first


def test_a_results_file_of_another_evaluation_is_stale_not_done(tmp_path):
    from aem_bench.registration import TASKS

    standard = get_protocol("standard")
    sweep = Sweep(standard, tmp_path / "cache", tmp_path / "results")
    cell = Cell(ROWS["singleframe-dp"], "AEM/HandoverBlock-v0", "clean")
    out = cell.results_file(sweep.results_dir, standard)
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps({"episodes": 50, "seeds": list(range(100_000, 100_050))}))
    assert cell_state(sweep, cell) == "stale"
    assert TASKS[cell.task].memory is None
    out.write_text(json.dumps({"episodes": 100, "seeds": list(range(100_000, 100_100))}))
    assert cell_state(sweep, cell) == "done"


def test_the_progress_view_counts_the_time_each_cell_took(tmp_path):
    protocol = get_protocol("standard")
    sweep = Sweep(protocol, tmp_path / "cache", tmp_path / "results")
    cell = Cell(ROWS["singleframe-dp"], "AEM/HandoverBlock-v0", "clean")
    assert spent_minutes(sweep, cell) == 0
    checkpoint = sweep.checkpoint_dir(cell.task, cell.row)
    checkpoint.mkdir(parents=True)
    (checkpoint / "train_log.jsonl").write_text(
        '{"step": 500, "seconds": 60.0}\n{"step": 1000, "seconds": 120.0}\n')
    (checkpoint / "eval_clean.jsonl").write_text(
        '{"header": {}}\n{"seed": 1, "seconds": 30.0}\n{"seed": 2, "seconds": 30.0}\n')
    assert spent_minutes(sweep, cell) == pytest.approx(3.0)
    table = status_table(sweep, [cell])
    assert "core-minutes so far" in table and "0.1 core-hours so far" in table
    assert re.search(r"\| training\s+\|\s+3 \|", table), table


def test_every_row_builds_on_rows_that_exist():
    for row in ROWS.values():
        assert row.encoder_from is None or row.encoder_from in ROWS
        assert (row.aem_ablation is not None) == (row.policy.startswith("aem-"))


SMOKE_ROWS = ["singleframe-dp", "gru-dp"]


@pytest.fixture(scope="module")
def smoke_demo(tmp_path_factory):
    """`make demo`'s sweep on the smoke protocol: two worker processes (the second row waits for
    the first's encoder), a GIF per cell; its folder."""
    out = tmp_path_factory.mktemp("demo")
    assert main(["sweep", "--protocol", "smoke", "--rows", *SMOKE_ROWS, "--workers", "2",
                 "--cache", str(out / "cache"), "--results-dir", str(out / "results"),
                 "--video", str(out / "videos")]) == 0
    return out


@pytest.mark.slow
def test_what_make_demo_runs_in_two_workers_with_videos(smoke_demo):
    """`make demo`'s commands on the smoke protocol: the sweep's cells, a GIF each, the
    leaderboard of the results."""
    out = smoke_demo
    assert sorted(p.name for p in (out / "results").iterdir()) == [
        "gru-dp_ClickBell-v1_smoke.json", "singleframe-dp_ClickBell-v1_smoke.json"]
    assert [len(list((out / "videos" / row).glob("*.gif"))) for row in SMOKE_ROWS] == [1, 1]
    log = (out / "cache" / "ClickBell-v1" / "singleframe-dp" / "train_log.jsonl").read_text()
    assert len(log.splitlines()) == 1  # trained once, though both cells needed it
    assert main(["leaderboard", "--results", str(out / "results"),
                 "--out", str(out / "LEADERBOARD.md")]) == 0
    assert "gru-dp" in (out / "LEADERBOARD.md").read_text()


@pytest.mark.slow
def test_the_frozen_encoder_control_retrains_only_the_head(smoke_demo):
    """The memory rows' control: the single-frame DP's head trained anew over its frame encoder,
    which it takes frozen and unchanged, with no memory."""
    import torch

    from aem_bench.policies import load_policy

    sweep = Sweep(get_protocol("smoke"), smoke_demo / "cache", smoke_demo / "results",
                  progress=False)
    task = sweep.protocol.tasks[0]
    control = load_policy(sweep.checkpoint(task, ROWS["singleframe-dp-frozen-encoder"]))
    source = load_policy(sweep.task_dir(task) / "singleframe-dp")
    assert control.config.freeze_encoder is True and control.memory is None
    assert control.history is None
    for (name, mine), (_, theirs) in zip(control.encoder.state_dict().items(),
                                         source.encoder.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), name


def _outcomes(results_dir):
    """Each results file's episodes: what must not depend on where the cells ran."""
    return {path.name: (result["successes"], result["seeds"],
                        [(r["seed"], r["success"], r["steps"]) for r in result["records"]])
            for path in sorted(results_dir.iterdir())
            for result in [json.loads(path.read_text())]}


def _mtimes(folder):
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_ray_tasks_give_the_local_results_name_a_failed_cell_and_resume(smoke_demo, local_ray,
                                                                       tmp_path):
    """The same sweep as Ray tasks on two CPUs, beside a cell whose training raises (it waits
    for the demonstrations' lock, then fails): the worker processes' results, the failed cell
    named, and a second run, from the command line, that touches nothing."""
    smoke = get_protocol("smoke")
    sweep = Sweep(smoke, tmp_path / "cache", tmp_path / "results", progress=False)
    task = smoke.tasks[0]
    broken = Cell(Row("no-such-policy", "no-such-policy"), task, "clean")
    errors = run(sweep, [*cells(smoke, SMOKE_ROWS), broken], workers=2, backend="ray")
    assert len(errors) == 1 and errors[0].startswith(
        f"no-such-policy on {task}: UsageError: name: unknown policy 'no-such-policy'")
    assert _outcomes(sweep.results_dir) == _outcomes(smoke_demo / "results")
    log = sweep.task_dir(task) / "singleframe-dp" / "train_log.jsonl"
    assert len(log.read_text().splitlines()) == 1  # trained once, though both cells needed it
    before = _mtimes(tmp_path)
    assert main(["sweep", "--protocol", "smoke", "--rows", *SMOKE_ROWS, "--backend", "ray",
                 "--workers", "2", "--cache", str(sweep.cache),
                 "--results-dir", str(sweep.results_dir)]) == 0
    assert _mtimes(tmp_path) == before


class _SweepWhoseCellDies(Sweep):
    """A cell of the row "dies" ends its worker process as the OOM killer would; the others are
    done at once."""

    def run_cell(self, cell):
        if cell.row.name == "dies":
            os._exit(9)
        return self.results_dir / cell.row.name


@pytest.mark.slow  # Ray's start
def test_a_ray_worker_that_dies_is_reported_for_its_cell_and_the_others_go_on(local_ray,
                                                                               tmp_path):
    sweep = _SweepWhoseCellDies(TINY, tmp_path / "cache", tmp_path / "results", progress=False)
    dies, lives = (Cell(Row(name, "singleframe-dp"), "AEM/ShellGame-v0", "clean")
                   for name in ("dies", "lives"))
    errors = run(sweep, [dies, lives], workers=1, backend="ray")
    assert len(errors) == 1 and errors[0].startswith(
        "dies on AEM/ShellGame-v0: its Ray worker died (killed, out of memory, crashed in native "
        "code, or its node lost): ")


def test_without_ray_the_ray_backend_is_refused_naming_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is missing
    assert main(["sweep", "--backend", "ray", "--cache", str(tmp_path / "c"),
                 "--results-dir", str(tmp_path / "r"), "--dry-run"]) == 2
    assert "error: --backend: the Ray backend needs Ray, which is not installed: pip install " \
           "'aem-bench[ray]'" in capsys.readouterr().err
    with pytest.raises(ModuleNotFoundError, match=re.escape("aem-bench[ray]")):
        run(Sweep(TINY, tmp_path / "c", tmp_path / "r"), [], backend="ray")


class _SweepWithAWorkerThatDies(Sweep):
    """A cell of the row "dies" ends its worker process as the OOM killer would; the others take
    half a second and mark their results folder."""

    def run_cell(self, cell):
        if cell.row.name == "dies":
            os._exit(9)
        time.sleep(0.5)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        (self.results_dir / cell.row.name).touch()
        return self.results_dir / cell.row.name


def test_a_worker_process_that_dies_is_reported_and_the_other_cells_go_on(tmp_path):
    """--workers 2 in local processes: a worker killed does not hang the sweep. The cells running
    then are reported as stopped (the dead one among them); every other cell runs."""
    sweep = _SweepWithAWorkerThatDies(TINY, tmp_path / "cache", tmp_path / "results",
                                      progress=False)
    names = ["dies", "a", "b", "c", "d"]
    todo = [Cell(Row(name, "singleframe-dp"), "AEM/ShellGame-v0", "clean") for name in names]
    errors = []
    worker = threading.Thread(target=lambda: errors.extend(run(sweep, todo, workers=2)),
                              daemon=True)
    worker.start()
    worker.join(timeout=300)
    assert not worker.is_alive(), "the sweep hangs on a dead worker"
    stopped = {error.split(" on ")[0]: error for error in errors}
    assert len(stopped) == len(errors) and "dies" in stopped, errors
    for name, error in stopped.items():
        assert error.startswith(f"{name} on AEM/ShellGame-v0: a worker process died (killed, "
                                "out of memory, crashed in native code, or failed to start"), error
        assert "it resumes when the sweep runs again" in error
    ran = {path.name for path in sweep.results_dir.glob("*")}
    assert ran | set(stopped) == set(names) and not ran & set(stopped)  # none lost
    assert "d" in ran  # started after the break, in a new pool


def test_a_damaged_results_file_of_a_cell_is_named_not_reused(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"episodes": 1, "seeds": [100')
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: damaged \(cut short.*move "
                       "it away, or give the sweep another --results-dir"):
        check_result(path, TINY)


def test_the_status_passes_over_a_log_line_cut_short_and_names_a_damaged_log(tmp_path, capsys):
    protocol = get_protocol("certificate-budget")
    argv = ["sweep", "--protocol", protocol.name, "--tasks", "AEM/ShellGame-v0", "--rows",
            "singleframe-dp", "--cache", str(tmp_path / "cache"), "--results-dir",
            str(tmp_path / "results"), "--dry-run"]
    sweep = Sweep(protocol, tmp_path / "cache", tmp_path / "results")
    log = sweep.task_dir("AEM/ShellGame-v0") / "singleframe-dp" / "train_log.jsonl"
    log.parent.mkdir(parents=True)
    entries = ('{"step": 10, "loss": 1.0, "seconds": 5.0}\n'
               '{"step": 20, "loss": 0.9, "seconds": 9.0}\n')
    log.write_text(entries + '{"step": 30, "lo')  # killed while writing its line
    assert main(argv) == 0
    assert re.search(r"\| singleframe-dp +\| AEM/ShellGame-v0 +\| training",
                     capsys.readouterr().out)
    log.write_text(entries + "garbage\n" + '{"step": 30, "lo')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"aem-bench sweep: error: {log}:3: not a training log entry; the log is "
                   f"damaged (move {log.parent} away to train that cell afresh)\n")
