"""Leaderboard: results-file schema, loading, and Markdown rendering."""

from __future__ import annotations

import json

import pytest

from aem_bench.evaluator import wilson_interval
from aem_bench.leaderboard.results import ResultsFileError, load_results, validate_result
from aem_bench.leaderboard.table import FOOTER, render_markdown, write_leaderboard


def make_result(policy="hold", successes=5, episodes=10, task="AEM/HandoverBlock-v0", **extra):
    """A valid results file, as the evaluator writes it."""
    return {
        "policy": policy,
        "task": task,
        "episodes": episodes,
        "seeds": list(range(100_000, 100_000 + episodes)),
        "successes": successes,
        "success_rate": successes / episodes,
        "success_ci95": list(wilson_interval(successes, episodes)),
        "latency_ms": {"median": 1.5, "p95": 2.25},
        "hardware": {"cpu": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "cores": 2},
        "versions": {"numpy": "2.1.0"},
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "created": "2025-01-01T00:00:00+00:00",
        **extra,
    }


# --- Schema ------------------------------------------------------------------------------------


def test_valid_result_passes_and_variant_defaults_to_clean():
    result = make_result()
    checked = validate_result(result, "ok.json")
    assert checked["variant"] == "clean"
    assert "variant" not in result  # the caller's dict is left alone
    assert validate_result(make_result(variant="occluded"))["variant"] == "occluded"


MISSING = object()


def _edit(dotted, value):
    """A mutation that sets the nested field ``dotted`` to ``value``, or deletes it if MISSING."""

    def mutate(result):
        *parents, last = dotted.split(".")
        for key in parents:
            result = result[key]
        if value is MISSING:
            del result[last]
        else:
            result[last] = value

    return mutate


@pytest.mark.parametrize(
    "mutate, field, problem",
    [
        (_edit("policy", MISSING), "policy", "missing"),
        (_edit("latency_ms.p95", MISSING), "latency_ms.p95", "missing"),
        (_edit("latency_ms", 3.0), "latency_ms", "must be dict"),
        (_edit("episodes", "10"), "episodes", "must be int"),
        (_edit("episodes", True), "episodes", "must be int"),
        (_edit("git_commit", 123), "git_commit", "must be str or null"),
        (_edit("success_rate", float("nan")), "success_rate", "finite"),
        (_edit("success_rate", 1.5), "success_rate", "[0, 1]"),
        (_edit("success_ci95", [0.6, 0.9]), "success_ci95", "lo <= success_rate"),
        (_edit("success_ci95", [0.1]), "success_ci95", "[lo, hi]"),
        (_edit("seeds", [1, 2, 3]), "seeds", "episodes is 10"),
        (_edit("seeds", [1] * 10), "seeds", "duplicates"),
        (_edit("successes", 7), "successes", "success_rate"),
        (_edit("latency_ms.p95", 0.5), "latency_ms.p95", "latency_ms.median"),
        (_edit("hardware.cores", "2"), "hardware.cores", "must be int"),
        (_edit("versions.numpy", 2), "versions.numpy", "must be str"),
        (_edit("created", "yesterday"), "created", "ISO 8601"),
    ],
)
def test_invalid_result_names_source_and_field(mutate, field, problem):
    result = make_result()
    mutate(result)
    with pytest.raises(ResultsFileError) as excinfo:
        validate_result(result, "bad.json")
    message = str(excinfo.value)
    assert message.startswith(f"bad.json: field '{field}'")
    assert problem in message


def test_load_results_reads_every_json_file(tmp_path):
    for name in ("b", "a"):
        (tmp_path / f"{name}.json").write_text(json.dumps(make_result(policy=name)))
    (tmp_path / "notes.txt").write_text("not a result")
    assert [r["policy"] for r in load_results(tmp_path)] == ["a", "b"]


def test_load_results_names_the_bad_file(tmp_path):
    (tmp_path / "good.json").write_text(json.dumps(make_result()))
    broken = make_result()
    del broken["hardware"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ResultsFileError, match=r"broken\.json: field 'hardware' is missing"):
        load_results(tmp_path)


def test_load_results_reports_corrupt_json_and_missing_directory(tmp_path):
    (tmp_path / "corrupt.json").write_text('{"policy": "x", ')
    with pytest.raises(ResultsFileError, match=r"corrupt\.json: not valid JSON"):
        load_results(tmp_path)
    with pytest.raises(ResultsFileError, match="no such results directory"):
        load_results(tmp_path / "absent")


# --- Markdown ----------------------------------------------------------------------------------


def _table_rows(markdown, heading):
    """Policy names of the table under ``heading``, in order."""
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # skip header
    return [row.split("|")[1].strip() for row in rows]


def test_render_markdown_one_table_per_task_and_variant_sorted_by_success():
    results = [
        make_result("mid", successes=5),
        make_result("best", successes=9),
        make_result("worst", successes=0),
        make_result("occluded-only", successes=2, variant="occluded"),
        make_result("other-task", successes=10, task="AEM/Other-v0"),
    ]
    markdown = render_markdown(results)

    assert _table_rows(markdown, "## AEM/HandoverBlock-v0 (clean)") == ["best", "mid", "worst"]
    assert _table_rows(markdown, "## AEM/HandoverBlock-v0 (occluded)") == ["occluded-only"]
    assert _table_rows(markdown, "## AEM/Other-v0 (clean)") == ["other-task"]
    assert markdown.index("AEM/HandoverBlock-v0 (clean)") < markdown.index("AEM/Other-v0")

    best_row = next(line for line in markdown.splitlines() if line.startswith("| best"))
    cells = [cell.strip() for cell in best_row.split("|")[1:-1]]
    lo, hi = wilson_interval(9, 10)
    assert cells == [
        "best",
        f"90.0 [{100 * lo:.1f}, {100 * hi:.1f}]",
        "10",
        "100000-100009",
        "1.50 / 2.25",
        "Intel Xeon Platinum 8481C, 2 cores",
        "0123456",
    ]
    assert markdown.rstrip().endswith(FOOTER)


def test_render_markdown_ties_go_to_the_faster_policy_and_null_commit_shows_dash():
    slow = make_result("slow", latency_ms={"median": 9.0, "p95": 9.5})
    fast = make_result("fast", git_commit=None)
    markdown = render_markdown([slow, fast])
    assert _table_rows(markdown, "(clean)") == ["fast", "slow"]
    fast_row = next(line for line in markdown.splitlines() if line.startswith("| fast"))
    assert fast_row.split("|")[-2].strip() == "-"


def test_write_leaderboard_renders_results_directory(tmp_path):
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    (results_dir / "hold.json").write_text(json.dumps(make_result()))
    out = tmp_path / "out" / "LEADERBOARD.md"
    markdown = write_leaderboard(results_dir, out)
    assert out.read_text() == markdown
    assert "| hold" in markdown


def test_render_markdown_without_results():
    markdown = render_markdown([])
    assert "_No results yet._" in markdown and FOOTER in markdown
