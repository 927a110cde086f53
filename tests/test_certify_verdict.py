"""The certificates' computed verdict and best fixed guess."""

import json

import pytest

from aem_bench.certify import MEMORY_NEEDED, add_verdicts, best_fixed_guess, verdict
from aem_bench.evaluator import wilson_interval

SEEDS = list(range(100_000, 100_050))  # the certificates' evaluation seeds


def rate(successes: int, episodes: int = 50) -> dict:
    return {"successes": successes, "episodes": episodes, "rate": successes / episodes,
            "ci95": list(wilson_interval(successes, episodes))}


@pytest.mark.parametrize("oracle, blind, guess, expected", [
    (45, 10, 12, MEMORY_NEEDED),
    # 45/50 (78-96%) against 10/50 (11-33%) but 2/50 for the guess (1-13%): beats the guess.
    (45, 10, 2, "above the best fixed guess"),
    # 30/50 (46-72%) against 20/50 (28-54%): the intervals overlap.
    (30, 20, 20, "overlaps the no-oracle one"),
    (30, 20, 2, "(28-54%); the no-oracle rate (40%) is above"),
])
def test_verdict_rule(oracle, blind, guess, expected):
    entry = {"with_oracle": rate(oracle), "without_oracle": rate(blind),
             "best_fixed_guess": rate(guess)}
    result = verdict(entry)
    if expected == MEMORY_NEEDED:
        assert result == MEMORY_NEEDED
    else:
        assert result.startswith("not shown: ") and expected in result


def test_verdict_at_the_edges():
    # The no-oracle rate equal to the guess's upper bound still passes ("not above").
    guess = rate(5)
    blind = {**rate(10), "rate": guess["ci95"][1]}
    assert verdict({"with_oracle": rate(45), "without_oracle": blind,
                    "best_fixed_guess": guess}) == MEMORY_NEEDED
    # Touching intervals are not "above".
    oracle = {**rate(45), "ci95": [rate(10)["ci95"][1], 1.0]}
    assert verdict({"with_oracle": oracle, "without_oracle": rate(10),
                    "best_fixed_guess": rate(12)}) != MEMORY_NEEDED


def test_verdict_needs_the_best_fixed_guess():
    with pytest.raises(ValueError, match="best_fixed_guess"):
        verdict({"with_oracle": rate(45), "without_oracle": rate(10)})


@pytest.mark.parametrize("task, successes, of", [
    # The audit's figures, counted by hand from the seeds: always lifting slot 0 scores 23/50
    # in RememberColor3 and 16/50 (32%) in RememberColor5; in RememberColor9 slot 1 and colour
    # 1 (and colour 8) tie at 10/50 (20%), and the fact is named first.
    ("AEM/RememberColor3-v0", 23, "oracle"),
    ("AEM/RememberColor5-v0", 16, "oracle"),
    ("AEM/RememberColor9-v0", 10, "hidden_fact"),
])
def test_best_fixed_guess_on_the_certificates_seeds(task, successes, of):
    guess = best_fixed_guess(task, SEEDS)
    assert (guess["successes"], guess["episodes"], guess["of"]) == (successes, 50, of)
    assert guess["ci95"] == pytest.approx(list(wilson_interval(successes, 50)))
    assert sum(guess["counts"].values()) == 50


def test_best_fixed_guess_counts_the_fact(tmp_path):
    # ShellGame: the ball is under one of three cups; oracle and fact agree, so the counts are
    # the fact's over the three cups.
    guess = best_fixed_guess("AEM/ShellGame-v0", list(range(30)))
    assert len(guess["counts"]) == 3 and max(guess["counts"].values()) == guess["successes"]
    with pytest.raises(ValueError, match="at least one seed"):
        best_fixed_guess("AEM/ShellGame-v0", [])


def test_add_verdicts_writes_both_fields(tmp_path):
    record = tmp_path / "certificates.json"
    entry = {"task": "AEM/RememberColor3-v0", "chance": 1 / 3,
             "with_oracle": {**rate(50), "seeds": SEEDS},
             "without_oracle": {**rate(25), "seeds": SEEDS}}
    record.write_text(json.dumps({entry["task"]: entry}))
    add_verdicts(record)
    written = json.loads(record.read_text())[entry["task"]]
    assert written["best_fixed_guess"]["successes"] == 23
    assert written["verdict"] == MEMORY_NEEDED  # 25/50 is under 23/50's upper bound (59%)
    other = {**entry, "with_oracle": {**rate(50), "seeds": SEEDS[:10]}}
    record.write_text(json.dumps({entry["task"]: other}))
    with pytest.raises(ValueError, match="different seeds"):
        add_verdicts(record)


# --- a certificate from two results files already made (no training) ---------------------------
def sweep_result(oracle: bool, successes: int, **recipe_changes) -> dict:
    """A results file of a sweep's single-frame cell on ShellGame, 4 episodes."""
    seeds = [100000, 100001, 100002, 100003]
    lo, hi = wilson_interval(successes, len(seeds))
    recipe = {"demos_sha256": "ab" * 32, "demo_episodes": 50, "policy": "singleframe-dp",
              "steps": 2000, "batch_size": 64, "seed": 0,
              "config_overrides": {"image_size": [64, 64]},
              "command": f"aem-bench sweep (oracle {oracle})", "git_commit": "c" * 40,
              **recipe_changes}
    return {"policy": f"singleframe-dp{'-with-oracle' if oracle else ''}",
            "encoder": "singleframe", "head": "dp",
            "task": "AEM/ShellGame-v0", "episodes": 4, "seeds": seeds, "successes": successes,
            "success_rate": successes / 4, "success_ci95": [lo, hi],
            "latency_ms": {"median": 0.1, "p95": 40.0},
            "hardware": {"cpu": "a CPU", "cores": 2}, "versions": {"aem-bench": "0.1.0"},
            "git_commit": "c" * 40, "created": "2026-11-30T14:32:21+00:00",
            "observations": ["rgb", "qpos", "oracle"] if oracle else ["rgb", "qpos"],
            "training": {"recipe": recipe}}


def _without(result: dict, dotted: str) -> dict:
    """``result`` (a copy) without the nested key ``dotted``."""
    result = json.loads(json.dumps(result))
    *parents, last = dotted.split(".")
    part = result
    for key in parents:
        part = part[key]
    del part[last]
    return result


@pytest.mark.parametrize(("without", "with_", "problem"), [
    (sweep_result(True, 1), sweep_result(True, 4), "reads the oracle"),
    (sweep_result(False, 1), sweep_result(False, 4), "does not read"),
    (sweep_result(False, 1), sweep_result(True, 4, steps=4000), "trained differently in"),
    (sweep_result(False, 1), {**sweep_result(True, 4), "training": None}, "training recipe"),
    (sweep_result(False, 1), {**sweep_result(True, 4), "task": "AEM/PutBackBlock-v1"}, "not AEM"),
])
def test_a_certificate_from_results_takes_only_two_policies_that_differ_by_the_oracle(
        without, with_, problem, tmp_path, capsys):
    from aem_bench.cli import main

    paths = [tmp_path / "without.json", tmp_path / "with.json"]
    for path, result in zip(paths, (without, with_), strict=True):
        path.write_text(json.dumps(result))
    assert main(["certify", "--task", "AEM/ShellGame-v0", "--out", str(tmp_path / "cert"),
                 "--from-results", *map(str, paths)]) == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "cert" / "certificate.json").exists()


def test_a_certificate_from_results_computes_the_rest(tmp_path, capsys):
    from aem_bench.cli import main

    paths = [tmp_path / "without.json", tmp_path / "with.json"]
    for path, result in zip(paths, (sweep_result(False, 0), sweep_result(True, 4)), strict=True):
        path.write_text(json.dumps(result))
    assert main(["certify", "--task", "AEM/ShellGame-v0", "--out", str(tmp_path / "cert"),
                 "--from-results", *map(str, paths)]) == 0
    entry = json.loads((tmp_path / "cert" / "certificate.json").read_text())
    assert entry["budget"]["demos"] == 50 and entry["budget"]["train_steps"] == 2000
    assert entry["with_oracle"]["successes"] == 4 and entry["without_oracle"]["successes"] == 0
    assert entry["best_fixed_guess"]["episodes"] == 4 and entry["expert"]["episodes"] == 100
    assert entry["trained_by"]["with_oracle"] == "aem-bench sweep (oracle True)"
    assert entry["git_commit"] == "c" * 40  # the policies' training commit, not this process's
    assert entry["verdict"] == verdict(entry)
    assert "verdict:" in capsys.readouterr().out
    # budget flags belong to a certificate run that trains
    assert main(["certify", "--task", "AEM/ShellGame-v0", "--out", str(tmp_path / "c2"),
                 "--demos", "5", "--from-results", *map(str, paths)]) == 2


@pytest.mark.parametrize(("damage", "says"), [
    # Off the results files' schema: the leaderboard's reader names the field.
    (lambda r: json.dumps(_without(r, "success_ci95")), "field 'success_ci95' is missing"),
    (lambda r: json.dumps(_without(r, "seeds")), "field 'seeds' is missing"),
    # What a certificate reads besides the schema.
    (lambda r: json.dumps(_without(r, "successes")), "it lacks successes"),
    (lambda r: json.dumps(_without(r, "observations")), "it lacks observations"),
    (lambda r: json.dumps(_without(r, "training.recipe.steps")), "training.recipe.steps"),
    (lambda r: json.dumps(_without(r, "training.recipe.config_overrides")),
     "training.recipe.config_overrides.image_size"),
    (lambda r: json.dumps({**r, "training": {"recipe": {}}}), "training recipe"),
    # Not JSON: cut short by a kill, or garbage.
    (lambda r: json.dumps(r)[:200], "not valid JSON"),
    (lambda r: "\x00garbage", "not valid JSON"),
])
def test_a_results_file_a_certificate_cannot_be_made_from_is_named(damage, says, tmp_path,
                                                                   capsys):
    """A results file that is damaged or lacks what a certificate reads: one line naming the
    file and what is missing, exit code 2, no traceback, no certificate."""
    from aem_bench.cli import main

    without, with_ = tmp_path / "without.json", tmp_path / "with.json"
    without.write_text(json.dumps(sweep_result(False, 0)))
    with_.write_text(damage(sweep_result(True, 4)))
    assert main(["certify", "--task", "AEM/ShellGame-v0", "--out", str(tmp_path / "cert"),
                 "--from-results", str(without), str(with_)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aem-bench certify: error: {with_}") and says in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "cert" / "certificate.json").exists()


def test_a_certificate_from_results_given_as_dicts_names_what_is_missing():
    from aem_bench.certify import certificate_from_results
    from aem_bench.errors import InputError

    with pytest.raises(InputError, match=r"^with_oracle: .*it lacks successes, "
                       r"training\.recipe\.seed"):
        certificate_from_results("AEM/ShellGame-v0", sweep_result(False, 0), _without(
            _without(sweep_result(True, 4), "successes"), "training.recipe.seed"), command="c")


@pytest.mark.parametrize(("drop", "commit"), [
    (["training.recipe.git_commit"], "e" * 40),  # trained at an unknown commit: the evaluation's
    (["training.recipe.git_commit", "git_commit"], "unknown: neither results file records it"),
])
def test_a_certificate_from_results_never_takes_this_process_commit_for_theirs(drop, commit):
    """A certificate from results made elsewhere names the code that made them, or says it is
    unknown; this process's commit, which only computed the fixed guess, is `certified_at`."""
    from aem_bench.certify import certificate_from_results
    from aem_bench.evaluator.report import collect_provenance

    results = [{**sweep_result(False, 0), "git_commit": "e" * 40},
               {**sweep_result(True, 4), "git_commit": "e" * 40}]
    for dotted in drop:
        results = [_without(result, dotted) for result in results]
    entry = certificate_from_results("AEM/ShellGame-v0", *results, command="c")
    assert entry["git_commit"] == commit
    assert entry["certified_at"] == collect_provenance().get("git_commit")
