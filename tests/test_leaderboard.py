"""Leaderboard: results-file schema, aggregates across tasks, Markdown, plots, and the web page."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aem_bench.cli import main
from aem_bench.leaderboard.page import render_html
from aem_bench.leaderboard.plots import render_plots
from aem_bench.leaderboard.publish import write_leaderboard
from aem_bench.leaderboard.results import ResultsFileError, load_results, validate_result
from aem_bench.leaderboard.sections import FOOTER, build_sections, format_rate
from aem_bench.leaderboard.table import render_markdown
from aem_bench.policies import POLICIES, encoders
from aem_bench.stats import aggregate_success, wilson_interval

HANDOVER = "AEM/HandoverBlock-v0"
STACK = "AEM/StackBlocksTwo-v0"  # another clean manipulation task
HANDOVER_CLUTTERED = "AEM/HandoverBlock-Cluttered-v0"
PUT_BACK = "AEM/PutBackBlock-v1"  # a memory task
REAL_RESULTS = Path(__file__).resolve().parents[1] / "leaderboard" / "results"


def make_result(policy="hold", successes=5, episodes=10, task=HANDOVER, **extra):
    """A valid results file, as the evaluator writes it: the first ``successes`` episodes
    succeed."""
    seeds = list(range(100_000, 100_000 + episodes))
    return {
        "policy": policy,
        "encoder": "singleframe",
        "head": "dp",
        "task": task,
        "episodes": episodes,
        "seeds": seeds,
        "successes": successes,
        "success_rate": successes / episodes,
        "success_ci95": list(wilson_interval(successes, episodes)),
        "latency_ms": {"median": 1.5, "p95": 2.25},
        "encoder_latency_ms": {"median": 0.75, "p95": 1.0},
        "peak_rss_mb": 812.4,
        "episodes_per_hour": 240.0,
        "workers": 1,
        "hardware": {"cpu": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "cores": 2},
        "versions": {"numpy": "2.1.0"},
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "created": "2025-01-01T00:00:00+00:00",
        "records": [
            {"seed": seed, "success": index < successes, "steps": 100, "seconds": 1.0,
             "latency_ms": {"median": 1.5, "p95": 2.25}, "error": None}
            for index, seed in enumerate(seeds)
        ],
        "training": {"checkpoint": "runs/x", "policy_type": "singleframe-dp", "memory": None,
                     "recipe": {"policy": "singleframe-dp", "steps": 2000, "seed": 0}},
        **extra,
    }


def markdown_of(results):
    return render_markdown(build_sections([validate_result(r) for r in results]))


# --- Schema ------------------------------------------------------------------------------------


def test_valid_result_passes_and_variant_defaults_to_clean():
    result = make_result()
    checked = validate_result(result, "ok.json")
    assert checked["variant"] == "clean"
    assert "variant" not in result  # the caller's dict is left alone
    cluttered = make_result(task=HANDOVER_CLUTTERED, variant="cluttered")
    assert validate_result(cluttered)["variant"] == "cluttered"


def test_optional_fields_may_be_absent_or_null():
    result = make_result()
    for name in ("encoder_latency_ms", "peak_rss_mb", "episodes_per_hour", "workers", "records",
                 "successes"):
        del result[name]
    validate_result(result)
    unmeasured = make_result(encoder_latency_ms={"median": None, "p95": None}, peak_rss_mb=None,
                             episodes_per_hour=None)
    validate_result(unmeasured)


def test_the_repository_results_files_are_valid():
    results = load_results(REAL_RESULTS)
    assert results
    # The zoo's encoder names ("singleframe", "aem") or a registered encoder's (a submission).
    zoo = {name.rsplit("-", 1)[0] for name in POLICIES}
    known = zoo | set(encoders.ENCODERS)
    assert {r["encoder"] for r in results} <= known
    assert {r["head"] for r in results} <= {name.rsplit("-", 1)[1] for name in POLICIES}
    submitted = [r for r in results if "submission" in r]
    assert submitted, "the standard protocol's reference submission is in the leaderboard"
    assert all(r["submission"]["protocol"]["name"] == "standard" for r in submitted)


MISSING = object()


def _edit(dotted, value):
    """A mutation that sets the nested field ``dotted`` to ``value``, or deletes it if MISSING."""

    def mutate(result):
        *parents, last = dotted.split(".")
        for key in parents:
            result = result[int(key)] if isinstance(result, list) else result[key]
        if value is MISSING:
            del result[last]
        else:
            result[last] = value

    return mutate


def _swap_first_records(result):
    result["records"][:2] = result["records"][1::-1]


@pytest.mark.parametrize(
    "mutate, field, problem",
    [
        (_edit("policy", MISSING), "policy", "missing"),
        (_edit("encoder", MISSING), "encoder", "missing"),
        (_edit("head", 3), "head", "must be str"),
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
        # The fields added with encoder latency, memory and throughput.
        (_edit("encoder_latency_ms.median", MISSING), "encoder_latency_ms.median", "missing"),
        (_edit("encoder_latency_ms.median", "fast"), "encoder_latency_ms.median", "or null"),
        (_edit("encoder_latency_ms.p95", 0.5), "encoder_latency_ms.p95", ">= encoder_latency"),
        (_edit("encoder_latency_ms.p95", None), "encoder_latency_ms.p95", "both be numbers"),
        (_edit("encoder_latency_ms.median", -1.0), "encoder_latency_ms.median", ">= 0"),
        (_edit("peak_rss_mb", -5.0), "peak_rss_mb", ">= 0"),
        (_edit("episodes_per_hour", 0), "episodes_per_hour", "> 0"),
        (_edit("workers", 0), "workers", "at least 1"),
        (_edit("workers", 1.0), "workers", "must be int"),
        # Consistency with the task registry and between summary and records.
        (_edit("task", "AEM/NoSuchTask-v0"), "task", "not a registered task"),
        (_edit("variant", "cluttered"), "variant", "'clean' scene"),
        (_edit("records", 3), "records", "must be list"),
        (_edit("records.0.success", 1), "records[0].success", "must be bool"),
        (_edit("records.0.seed", MISSING), "records[0].seed", "must be int"),
        (lambda r: r["records"].pop(), "records", "has 9 entries but episodes is 10"),
        (_swap_first_records, "records", "seeds differ"),
        (_edit("records.9.success", True), "records", "have 6 successes"),
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


# --- Aggregates across tasks -------------------------------------------------------------------


TASKS_4 = [STACK, HANDOVER, "AEM/LiftPot-v0", "AEM/ClickBell-v0"]  # clean manipulation tasks


def _per_task(successes, episodes=4, policy="p"):
    """One result per task of TASKS_4 with these success counts: the (episodes x tasks) 0/1
    matrix has the first ``successes[j]`` episodes of column j succeed."""
    return [make_result(policy, successes=n, episodes=episodes, task=task)
            for task, n in zip(TASKS_4, successes, strict=False)]


# Per-task rates 4/4, 1/4, 2/4 and 0/4.
COUNTS = [4, 1, 2, 0]


def test_aggregate_success_matches_a_hand_computation():
    aggregate = aggregate_success(_per_task(COUNTS), reps=500)
    assert aggregate["tasks"] == sorted(TASKS_4)
    assert aggregate["episodes_per_task"] == 4 and aggregate["reps"] == 500
    assert aggregate["mean"] == (1 + 0.25 + 0.5 + 0) / 4  # quarters: exact in binary
    # IQM over four tasks drops the best and the worst: the mean of 1/4 and 1/2.
    assert aggregate["iqm"] == (0.25 + 0.5) / 2
    for name in ("mean", "iqm"):
        lo, hi = aggregate[f"{name}_ci95"]
        assert 0 <= lo <= aggregate[name] <= hi <= 1
        assert lo < hi  # the episodes disagree: the bootstrap must see it


def test_aggregate_success_is_reproducible_and_leaves_numpy_alone():
    results = _per_task(COUNTS)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = aggregate_success(results, reps=300, seed=7)
    assert (np.random.get_state()[1] == before).all()
    assert aggregate_success(results[::-1], reps=300, seed=7) == first  # order does not matter


def test_aggregate_success_of_a_perfect_policy_has_no_spread():
    aggregate = aggregate_success(_per_task([5, 5, 5], episodes=5), reps=100)
    assert aggregate["mean"] == aggregate["iqm"] == 1.0
    assert aggregate["mean_ci95"] == aggregate["iqm_ci95"] == [1.0, 1.0]


def _without_records(results):
    del results[1]["records"]
    return results


@pytest.mark.parametrize(
    "results, problem",
    [
        ([], "got none"),
        (_without_records(_per_task(COUNTS)), "no per-episode 'records'"),
        (_per_task(COUNTS)[:1] * 2, "two results for task"),
        (_per_task(COUNTS)[:1] + _per_task([1, 1], episodes=6)[1:], "unequal episode counts"),
        (_per_task(COUNTS)[:1] + _per_task(COUNTS, policy="q")[1:2], "several policies"),
    ],
)
def test_aggregate_success_rejects_bad_input(results, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        aggregate_success(results)


# --- Markdown ----------------------------------------------------------------------------------


def _section(markdown, heading):
    """The text under ``heading`` up to the next heading of the same level or above."""
    level = heading.split(" ")[0]
    text = markdown.split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n#{{1,{len(level)}}} ", text, maxsplit=1)[0]


def _table_rows(markdown, heading):
    """Cells of the table right under ``heading``, without the header."""
    lines = [line for line in _section(markdown, heading).splitlines() if line.startswith("| ")]
    # Split on the pipes that separate cells, not on escaped ones inside a cell.
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[1:]]


def _policies(markdown, heading):
    return [row[0] for row in _table_rows(markdown, heading)]


def test_markdown_has_a_section_per_suite_and_variant():
    markdown = markdown_of([
        make_result("mid", successes=5),
        make_result("best", successes=9),
        make_result("worst", successes=0),
        make_result("best", successes=4, task=STACK),
        make_result("cluttered-only", successes=2, task=HANDOVER_CLUTTERED, variant="cluttered"),
        make_result("memory", successes=3, task=PUT_BACK),
    ])
    headings = re.findall(r"^##+ .*", markdown, flags=re.MULTILINE)
    assert headings == [
        "## Manipulation suite, clean scene",
        "### Success % by task",
        "### Across tasks",
        f"### {HANDOVER}",
        f"### {STACK}",
        "## Manipulation suite, cluttered scene",
        "### Success % by task",
        f"### {HANDOVER_CLUTTERED}",
        "## Memory suite, clean scene",
        "### Success % by task",
        f"### {PUT_BACK}",
    ]
    # the matrix: the policy on most tasks first, a '-' where it has no result
    matrix = _table_rows(markdown, "### Success % by task")
    assert matrix[0][:4] == ["best", "90", "40", "2"]
    assert [row[0] for row in matrix] == ["best", "mid", "worst"]
    assert matrix[1][2] == "-"
    assert _policies(markdown, f"### {HANDOVER}") == ["best", "mid", "worst"]
    assert _policies(markdown, f"### {HANDOVER_CLUTTERED}") == ["cluttered-only"]
    assert _policies(markdown, "### Across tasks") == ["best"]  # the only one on two tasks
    assert markdown.rstrip().endswith(FOOTER)


def test_results_without_their_training_are_marked_and_superseded_tasks_kept_apart():
    old_version = "AEM/PutBackBlock-v0"
    markdown = markdown_of([
        make_result("recorded", task=PUT_BACK),
        make_result("unrecorded", successes=7, task=PUT_BACK, training=None),
        make_result("recorded", task=old_version),
    ])
    assert _policies(markdown, f"### {PUT_BACK}") == ["unrecorded *", "recorded"]
    assert "* no training recorded" in _section(markdown, f"### {PUT_BACK}")
    # the old version keeps its table, marked, and stays out of the suite's matrix
    old_table = f"### {old_version} (superseded by {PUT_BACK}: not in the matrix)"
    assert _policies(markdown, old_table) == ["recorded"]
    matrix = _table_rows(markdown, "### Success % by task")
    assert [row[0] for row in matrix] == ["recorded", "unrecorded"] and len(matrix[0]) == 6


def test_a_policy_trained_on_privileged_labels_is_marked_in_every_table():
    """A memory readout trained on the oracle acts without it, but learned from it: the per-task
    table and the matrix mark it and say why."""
    readout = {"checkpoint": "runs/x", "policy_type": "gru-dp", "memory": "gru",
               "recipe": {"policy": "gru-dp", "steps": 2000, "seed": 0,
                          "config_overrides": {"memory_readout": "oracle"}}}
    markdown = markdown_of([make_result("plain", task=PUT_BACK),
                            make_result("read-out", successes=8, task=PUT_BACK,
                                        training=readout)])
    assert _policies(markdown, f"### {PUT_BACK}") == ["read-out †", "plain"]
    assert "† trained on privileged labels" in _section(markdown, f"### {PUT_BACK}")
    matrix = _table_rows(markdown, "### Success % by task")
    assert sorted(row[0] for row in matrix) == ["plain", "read-out †"]
    assert "† trained on privileged labels" in _section(markdown, "### Success % by task")


def test_under_a_protocol_the_matrix_holds_only_its_results():
    """The matrix compares like with like: results made under the protocol's recipe for their
    task, recorded (a sweep's protocol) or from the training recipe of an older results file;
    a variant's, another evaluation's and unrecorded results stay in the tables per task."""
    from aem_bench.recipe import get_protocol

    standard, certified = get_protocol("standard"), get_protocol("certificate-budget")
    demos, steps = standard.budget(PUT_BACK)

    def recipe(demo_episodes=demos, train_steps=steps):
        return {"recipe": {"demo_episodes": demo_episodes, "steps": train_steps,
                           "batch_size": 64, "seed": 0,
                           "config_overrides": {"image_size": [64, 64]}}}

    results = [
        make_result("swept", 50, 100, task=PUT_BACK,
                    training={"protocol": certified.to_dict()}),  # the shared cell
        make_result("scripted", 40, 100, task=PUT_BACK, training=recipe()),
        make_result("fewer-episodes", 30, 50, task=PUT_BACK,
                    training={"protocol": certified.to_dict()}),
        make_result("variant", 30, 100, task=PUT_BACK,
                    training={"protocol": certified.with_demos(500).to_dict()}),
        make_result("other-budget", 30, 100, task=PUT_BACK, training=recipe(train_steps=10)),
        make_result("unrecorded", 30, 100, task=PUT_BACK, training=None),
    ]
    checked = [validate_result(r) for r in results]
    markdown = render_markdown(build_sections(checked, standard))
    memory = _section(markdown, "## Memory suite, clean scene")
    assert sorted(row[0] for row in _table_rows(memory, "### Success % by task")) == \
        ["scripted", "swept"]
    assert "Only results made under the 'standard' protocol" in memory
    assert len(_policies(markdown, f"### {PUT_BACK}")) == len(results)  # every result here
    # Without a protocol, every policy's latest result.
    assert len(_table_rows(markdown_of(results), "### Success % by task")) == len(results)


def test_markdown_aggregate_row_is_the_rliable_aggregate():
    results = [make_result("two-tasks", successes=9), make_result("two-tasks", 4, task=STACK)]
    [row] = _table_rows(markdown_of(results), "### Across tasks")
    aggregate = aggregate_success(results)
    assert row == [
        "two-tasks", "singleframe", "dp", "2 / 12", "10",
        format_rate(aggregate["mean"], aggregate["mean_ci95"]),
        format_rate(aggregate["iqm"], aggregate["iqm_ci95"]),
        "1.50",
    ]
    assert row[5].startswith("65.0 [")  # (90% + 40%) / 2


def test_markdown_explains_a_policy_left_out_of_the_aggregate():
    results = [make_result("uneven", episodes=10), make_result("uneven", episodes=20, task=STACK)]
    section = _section(markdown_of(results), "### Across tasks")
    assert _table_rows(markdown_of(results), "### Across tasks") == []
    assert "_Not aggregated: uneven (unequal episode counts" in section


def test_markdown_task_row_cells():
    lo, hi = wilson_interval(9, 10)
    [row] = _table_rows(markdown_of([make_result("best", successes=9)]), f"### {HANDOVER}")
    assert row == [
        "best", "singleframe", "dp",
        f"90.0 [{100 * lo:.1f}, {100 * hi:.1f}]",
        "10",
        "100000-100009",
        "1.50 / 2.25",
        "0.75 / 1.00",
        "812",
        "240.0",
        "Intel Xeon Platinum 8481C, 2 cores",
        "0123456",
    ]


def test_markdown_marks_the_episodes_that_ended_in_an_error():
    crashed = make_result("crashy", successes=5, errors=2)
    for record in crashed["records"][-2:]:
        record["error"] = "step 3: environment crashed: RuntimeError('solver')"
    old = make_result("old-file", successes=4)  # no "errors" field: counted from its records
    old["records"][-1]["error"] = "step 0: action rejected: action must be finite"
    clean = make_result("clean", successes=3, errors=0)
    markdown = markdown_of([crashed, old, clean])
    episodes = {row[0]: row[4] for row in _table_rows(markdown, f"### {HANDOVER}")}
    assert episodes == {"crashy": "10 (2 errors)", "old-file": "10 (1 error)", "clean": "10"}
    assert "'(N errors)' after the episode count" in markdown


def test_markdown_shows_dashes_for_what_a_file_does_not_report():
    old = make_result("old", workers=3, encoder_latency_ms={"median": None, "p95": None})
    for name in ("peak_rss_mb", "episodes_per_hour"):
        del old[name]
    [row] = _table_rows(markdown_of([old]), f"### {HANDOVER}")
    assert row[7:11] == ["-", "-", "-", "Intel Xeon Platinum 8481C, 2 cores, 3 workers"]


def test_markdown_ties_go_to_the_faster_policy_and_null_commit_shows_dash():
    slow = make_result("slow", latency_ms={"median": 9.0, "p95": 9.5})
    fast = make_result("fast", git_commit=None)
    rows = _table_rows(markdown_of([slow, fast]), f"### {HANDOVER}")
    assert [row[0] for row in rows] == ["fast", "slow"]
    assert rows[0][-1] == "-"


def test_markdown_escapes_html_and_pipes_in_a_policy_name():
    [row] = _table_rows(markdown_of([make_result("<b>a|b</b>")]), f"### {HANDOVER}")
    assert row[0] == r"&lt;b&gt;a\|b&lt;/b&gt;" and len(row) == 12


def test_render_markdown_without_results():
    markdown = render_markdown([])
    assert "_No results yet._" in markdown and FOOTER in markdown


# --- Plots and written files -------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    return Image.open(io.BytesIO(data)).size


def test_plots_are_valid_and_identical_on_rerun():
    results = [validate_result(r) for r in (
        make_result("a", successes=9), make_result("b", successes=3, latency_ms={
            "median": 40.0, "p95": 80.0}), make_result("a", successes=10, task=STACK),
        make_result("zero", successes=0, latency_ms={"median": 0.0, "p95": 0.1}),
    )]
    plots = render_plots(results)
    assert set(plots) == {"success_vs_latency.png", "success_heatmap.png"}
    for data in plots.values():
        assert _png_size(data) == (1200, 500)
    assert render_plots(results) == plots  # no timestamp or version: reruns do not churn files
    for data in render_plots([]).values():
        assert _png_size(data) == (1200, 500)


def _results_dir(tmp_path, results):
    directory = tmp_path / "results"
    directory.mkdir()
    for index, result in enumerate(results):
        (directory / f"{index}.json").write_text(json.dumps(result))
    return directory


def test_write_leaderboard_writes_markdown_page_and_plots(tmp_path):
    results_dir = _results_dir(tmp_path, [make_result()])
    out = tmp_path / "out" / "LEADERBOARD.md"
    written = write_leaderboard(results_dir, out)
    plots = tmp_path / "out" / "plots"
    assert written == [out, out.parent / "index.html",
                       plots / "success_vs_latency.png", plots / "success_heatmap.png"]
    markdown = out.read_text()
    assert "| hold" in markdown and "](plots/success_vs_latency.png)" in markdown
    assert all(path.stat().st_size > 0 for path in written)


def test_cli_writes_the_leaderboard_and_reports_a_bad_file_in_one_line(tmp_path, capsys):
    results_dir = _results_dir(tmp_path, [make_result()])
    out = tmp_path / "README.md"
    assert main(["leaderboard", "--results", str(results_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and str(tmp_path / "index.html") in printed
    (results_dir / "1.json").write_text(json.dumps(make_result(variant="randomized")))
    assert main(["leaderboard", "--results", str(results_dir), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("aem-bench leaderboard: error: ") and "1.json: field 'variant'" in error


# --- Web page ----------------------------------------------------------------------------------


def test_page_escapes_text_from_results_files_and_fetches_nothing():
    hostile = "<script>alert('x')</script> & co"
    page = render_html(build_sections([validate_result(make_result(hostile))]),
                       {"caption <i>": render_plots([])["success_heatmap.png"]})
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)" in page
    assert "caption &lt;i&gt;" in page
    # Self-contained: no src or href that leaves the file.
    links = re.findall(r"""(?:src|href)="([^"]*)\"""", page)
    assert links and all(link.startswith("data:") for link in links)
    assert "http://" not in page and "https://" not in page


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium; scripts/setup.sh installs it, so its absence is a failure, not a skip."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: run `make setup` "
                    "(scripts/setup.sh installs Chromium and ChromeDriver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: run `make setup`")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def test_page_in_a_headless_browser_sorts_tables_and_shows_plots(browser, tmp_path):
    from selenium.webdriver.common.by import By

    latencies = {"fast": 0.5, "<b>slow & sure</b>": 30.0, "medium": 4.0}
    results = [
        make_result(name, successes=successes, latency_ms={"median": ms, "p95": 2 * ms})
        for (name, ms), successes in zip(latencies.items(), (3, 9, 6), strict=True)
    ]
    results[1].pop("encoder_latency_ms")  # a '-' cell, which sorts last either way
    results.append(make_result("fast", successes=7, task=STACK, latency_ms={"median": 0.5,
                                                                          "p95": 1.0}))
    out = tmp_path / "site" / "README.md"
    write_leaderboard(_results_dir(tmp_path, results), out)
    browser.get((out.parent / "index.html").as_uri())

    def table_under(heading):
        xpath = f"//h3[.='{heading}']/following-sibling::div[1]/table"
        return browser.find_element(By.XPATH, xpath)

    table = table_under(HANDOVER)

    def column(index):
        return [row.find_elements(By.TAG_NAME, "td")[index].text
                for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

    def click(header):
        table.find_element(By.XPATH, f".//th[.='{header}']").click()

    assert column(0) == ["<b>slow & sure</b>", "medium", "fast"]  # best success first
    aggregate_rows = table_under("Across tasks").find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [row.text.split(" ")[0] for row in aggregate_rows] == ["fast"]

    click("Latency ms (median / p95)")  # numeric: 0.5 < 4 < 30, though "30" < "4" as text
    assert column(0) == ["fast", "medium", "<b>slow & sure</b>"]
    click("Latency ms (median / p95)")
    assert column(0) == ["<b>slow & sure</b>", "medium", "fast"]
    click("Encoder ms (median / p95)")
    assert column(7)[-1] == "-"
    click("Encoder ms (median / p95)")
    assert column(7)[-1] == "-"

    # The matrix: one row per policy, the interval of each rate on hover.
    matrix_rows = table_under("Success % by task").find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(matrix_rows) == 3
    cells = matrix_rows[0].find_elements(By.TAG_NAME, "td")
    assert cells[0].text == "fast" and cells[1].text == "30"  # fast has both tasks: first
    assert cells[1].get_attribute("title").endswith("3/10, 95% CI 11-60%")
    # The filters show one suite's sections only.
    from selenium.webdriver.support.select import Select

    manipulation = browser.find_element(By.CSS_SELECTOR, "section[data-suite=manipulation]")
    Select(browser.find_element(By.ID, "filter-suite")).select_by_value("memory")
    assert not manipulation.is_displayed()
    Select(browser.find_element(By.ID, "filter-suite")).select_by_value("")
    assert manipulation.is_displayed()
    browser.save_screenshot(str(tmp_path / "page.png"))  # to look at when the page changes

    sizes = browser.execute_script(
        "return Array.from(document.images, (image) => image.complete && image.naturalWidth);")
    assert len(sizes) == 2 and all(size > 0 for size in sizes)
    page_text = browser.find_element(By.TAG_NAME, "body").text
    assert "0123456" in page_text and "100000-100009" in page_text  # commit, seeds
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []


def test_the_papers_ablation_table_sets_this_suites_rates_beside_the_papers():
    basket = "AEM/PlaceObjectBasket-v0"
    results = [make_result("aem-dp-full", successes=8), make_result("singleframe-dp", successes=6),
               make_result("aem-dp-full", successes=3, task=basket),
               make_result("aem-dp-memory-only", successes=2, task=basket),
               make_result("not-an-ablation", successes=9)]
    heading = "### AEM ablations, as in the paper's table"
    markdown = markdown_of(results)
    headings = re.findall(r"^### .*", _section(markdown, "## Manipulation suite, clean scene"),
                          flags=re.MULTILINE)
    assert headings.index(heading) == 2  # after the matrix and the aggregates, before the tasks
    rows = {row[0]: row[1:] for row in _table_rows(markdown, heading)}
    assert list(rows) == ["singleframe-dp", "singleframe-dp-frozen-encoder", "aem-dp-full",
                          "aem-dp-feature-add", "aem-dp-no-pretraining", "aem-dp-memory-only",
                          "aem-dp-no-actions"]
    assert rows["aem-dp-full"] == ["full AEM", "8/10: " + format_rate(0.8, wilson_interval(8, 10)),
                                   "96", "3/10: " + format_rate(0.3, wilson_interval(3, 10)), "76"]
    assert rows["aem-dp-memory-only"][1:] == ["-", "44", rows["aem-dp-memory-only"][3], "36"]
    assert rows["singleframe-dp"][1:] == ["6/10: " + format_rate(0.6, wilson_interval(6, 10)),
                                          "-", "-", "-"]
    assert rows["aem-dp-no-actions"][1:] == ["-", "68", "-", "44"]
    # the single frame alone is no ablation: no table to set beside the paper's
    assert heading not in markdown_of([make_result("singleframe-dp", successes=6)])


# --- Memory probes -----------------------------------------------------------------------------


def _probe(checkpoint, accuracy, use=None, **extra):
    """A memory probe as `aem-bench probe` writes it (the fields the leaderboard shows)."""
    probe = {"task": PUT_BACK, "memory": "gru", "checkpoint": f"runs/sweep/x/{checkpoint}",
             "step": "decision", "probe_accuracy": accuracy, "probe_ci95": [accuracy - 0.1, 1.0],
             "frame_probe_accuracy": 0.55, "frame_probe_ci95": [0.48, 0.62],
             "qpos_probe_accuracy": 0.61, "qpos_probe_ci95": [0.54, 0.67],
             "random_memory_probe_accuracy": None, "episodes": 200, **extra}
    if use is not None:
        probe.update(memory_use_rate=use, memory_use_ci95=[use - 0.05, use + 0.05],
                     fact_use_rate=0.5, fact_use_ci95=[0.45, 0.55])
    return probe


def test_the_memory_section_shows_each_probe_held_and_used(tmp_path):
    results_dir = _results_dir(tmp_path, [make_result("gru-dp", task=PUT_BACK)])
    probes_dir = tmp_path / "probes"
    probes_dir.mkdir()
    (probes_dir / "a.json").write_text(json.dumps(_probe("gru-dp", 1.0, use=0.56)))
    (probes_dir / "b.json").write_text(json.dumps(_probe("framestack-dp", 0.3)))
    out = tmp_path / "README.md"
    write_leaderboard(results_dir, out)  # probes/ beside results/ by default
    markdown = out.read_text()
    memory = markdown[markdown.index("## Memory suite, clean scene"):]
    assert "### Memory probes: is the fact held, and is it used?" in memory
    rows = [line for line in memory.splitlines() if line.startswith("| PutBackBlock-v1")]
    gru = next(row for row in rows if "gru-dp" in row)
    assert "100.0 [90.0, 100.0]" in gru and "55.0 [48.0, 62.0]" in gru
    assert [cell.strip() for cell in gru.split("|")][-3:-1] == ["56.0 [51.0, 61.0]",
                                                               "50.0 [45.0, 55.0]"]
    framestack = next(row for row in rows if "framestack-dp" in row)
    assert framestack.rstrip(" |").endswith("-")  # no swap test: a dash, not a number
    # Before the table of the single task.
    assert memory.index("Memory probes") < memory.index("### AEM/PutBackBlock-v1")
    assert "Memory probes" in (tmp_path / "index.html").read_text()


def test_a_probe_without_a_field_shown_is_named_with_its_file(tmp_path):
    from aem_bench.leaderboard.results import ResultsFileError, load_probes

    (tmp_path / "p.json").write_text(json.dumps({"task": PUT_BACK}))
    with pytest.raises(ResultsFileError, match=r"p\.json: a memory probe without .*'checkpoint'"):
        load_probes(tmp_path)
    assert load_probes(tmp_path / "absent") == []
