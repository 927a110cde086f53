"""What the leaderboard shows, whatever the format: sections of tables of text cells.

A section is one suite (manipulation or memory) in one scene variant. It opens with a matrix
(policies as rows, tasks as columns, then the mean and IQM across tasks and the latency), then the
policies' aggregates across its tasks (rliable mean and IQM with intervals), then a table per task. The Markdown
README and the HTML page both render these tables, so every number is formatted in one place.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aem_bench.recipe import Protocol
from aem_bench.registration import TASKS, VARIANT_SUFFIXES, current_tasks
from aem_bench.stats import aggregate_success
from aem_bench.sweep import ABLATION_ROWS, ABLATION_TASKS

SUITES = ("manipulation", "memory")
VARIANTS = tuple(VARIANT_SUFFIXES)  # clean, cluttered, randomized
AGGREGATE_TITLE = "Across tasks"
NO_VALUE = "-"

TITLE = "aem-bench leaderboard"

# Under the tables: how the numbers were made. Markdown; the page turns its `code` spans to HTML.
FOOTER = (
    "Produced by `aem_bench.evaluator.evaluate`: each policy runs the listed number of episodes "
    "on the first seeds of the listed range that the scripted expert solves (RoboTwin's protocol;"
    " a file may instead have run every seed of its range: its `seeds` list them), success is "
    "`info['is_success']` at the end of an episode, the interval is the 95% Wilson score "
    "interval, and latency is the wall time of each `policy.act` call (median / 95th percentile "
    "over all calls) on the hardware shown. Encoder ms is the time the observation encoder took "
    "in each call that encoded (median / p95), peak memory the evaluating process's peak resident"
    " set size, and episodes/h one worker's throughput, resets included; '-' where a results file"
    " does not report it. '(N errors)' after the episode count: N episodes ended in an error (the "
    "environment rejected the policy's action or crashed; the results file's records say which),"
    " counted as failures. The tables across tasks show, for each policy with results on two or "
    "more tasks of a section, all with per-episode records and the same number of episodes, the "
    "mean and the interquartile mean (IQM) of its per-task success rates, with 95% intervals from"
    " rliable's stratified bootstrap (2000 resamples of the episodes within each task, seed 0); "
    "their latency is the median of the per-task medians."
)


@dataclass(frozen=True)
class Column:
    header: str
    numeric: bool  # sorts by the number the cell starts with
    cell: Callable[[Any], str] | None = None  # None: the table's rows are built by hand


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: list[list[str]]
    note: str = ""  # shown under the table, e.g. policies left out of an aggregate
    # Per cell, what the page shows on hover (e.g. a rate's interval); None: nothing.
    hovers: list[list[str]] | None = None

    @property
    def headers(self) -> list[str]:
        return [column.header for column in self.columns]


@dataclass(frozen=True)
class Section:
    suite: str
    variant: str
    tables: list[Table]

    @property
    def title(self) -> str:
        return f"{self.suite.capitalize()} suite, {self.variant} scene"


# --- cells -------------------------------------------------------------------------------------
def format_rate(rate: float, ci95: list[float]) -> str:
    """A success rate and its interval, in percent: ``94.0 [83.8, 97.9]``."""
    lo, hi = ci95
    return f"{100 * rate:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def format_number(value: float | None, digits: int = 1) -> str:
    return NO_VALUE if value is None else f"{value:.{digits}f}"


def format_quantiles(quantiles: dict | None) -> str:
    """``median / p95`` in ms, or '-' when the quantity was not measured."""
    if not quantiles or quantiles.get("median") is None:
        return NO_VALUE
    return f"{quantiles['median']:.2f} / {quantiles['p95']:.2f}"


def short_hardware(result: dict) -> str:
    # "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz" -> "Intel Xeon Platinum 8481C"
    hardware = result["hardware"]
    cpu = re.sub(r"\((R|TM)\)|\bCPU\b|@.*$|\b\d+-Core Processor\b", "", hardware["cpu"])
    text = f"{' '.join(cpu.split())}, {hardware['cores']} cores"
    # Parallel episodes share the cores, which slows each policy call.
    workers = result.get("workers", 1)
    return text + (f", {workers} workers" if workers > 1 else "")


def seed_range(seeds: list[int]) -> str:
    # Consecutive seeds read as a range; anything else as a count.
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return f"{len(seeds)} seeds"


def episodes_cell(result: dict) -> str:
    """The episode count, marked with how many of them ended in an error (an invalid action or
    a crashed environment), which count as failures in the success rate: ``50 (2 errors)``."""
    errors = result.get("errors")
    if errors is None:  # a results file from before the count: the records still say it
        errors = sum(record.get("error") is not None for record in result.get("records") or [])
    if not errors:
        return str(result["episodes"])
    return f"{result['episodes']} ({errors} error{'s' if errors > 1 else ''})"


NO_RECIPE_MARK = " *"
NO_RECIPE_NOTE = ("* no training recorded: the results file does not say how its checkpoint "
                  "was trained (demonstrations, budget, seed, command), only its name does.")


LABELS_MARK = " †"
LABELS_NOTE = ("† trained on privileged labels: a readout of its memory learned to estimate "
               "the task's oracle from the demonstrations' records, and the head acts on that "
               "estimate; at run time it sees only the frames and the joint state.")


def training_labels(result: dict) -> str | None:
    """What the policy's memory readout was trained to estimate ("oracle", "fact"), if any."""
    recipe = (result.get("training") or {}).get("recipe") or {}
    return (recipe.get("config_overrides") or {}).get("memory_readout")


def policy_cell(result: dict) -> str:
    """The policy's name, marked when its results file does not carry its training recipe or
    when it was trained on privileged labels."""
    training = result.get("training") or {}
    return (result["policy"] + ("" if training.get("recipe") else NO_RECIPE_MARK)
            + (LABELS_MARK if training_labels(result) else ""))


TASK_COLUMNS = (
    Column("Policy", False, policy_cell),
    Column("Encoder", False, lambda r: r["encoder"]),
    Column("Head", False, lambda r: r["head"]),
    Column("Success % (95% CI)", True, lambda r: format_rate(r["success_rate"], r["success_ci95"])),
    Column("Episodes", True, episodes_cell),
    Column("Eval seeds", False, lambda r: seed_range(r["seeds"])),
    Column("Latency ms (median / p95)", True, lambda r: format_quantiles(r["latency_ms"])),
    Column("Encoder ms (median / p95)", True,
           lambda r: format_quantiles(r.get("encoder_latency_ms"))),
    Column("Peak memory MB", True, lambda r: format_number(r.get("peak_rss_mb"), 0)),
    Column("Episodes/h per worker", True, lambda r: format_number(r.get("episodes_per_hour"))),
    Column("Hardware", False, short_hardware),
    Column("Commit", False, lambda r: (r["git_commit"] or NO_VALUE)[:7]),
)

AGGREGATE_COLUMNS = (
    Column("Policy", False, lambda a: a["policy"]),
    Column("Encoder", False, lambda a: a["encoder"]),
    Column("Head", False, lambda a: a["head"]),
    Column("Tasks covered", True, lambda a: f"{len(a['tasks'])} / {a['suite_tasks']}"),
    Column("Episodes per task", True, lambda a: str(a["episodes_per_task"])),
    Column("Mean success % (95% CI)", True, lambda a: format_rate(a["mean"], a["mean_ci95"])),
    Column("IQM success % (95% CI)", True, lambda a: format_rate(a["iqm"], a["iqm_ci95"])),
    Column("Median latency ms", True, lambda a: f"{a['median_latency_ms']:.2f}"),
)


def _table(title: str, columns: tuple[Column, ...], items: list, note: str = "") -> Table:
    return Table(title, columns, [[column.cell(item) for column in columns] for item in items],
                 note)


# --- grouping ----------------------------------------------------------------------------------
def scene_of(task: str) -> tuple[str, str]:
    """(suite, variant) of a registered task id."""
    spec = TASKS[task]
    return ("memory" if spec.memory else "manipulation"), spec.scene


def latest_by(results: list[dict], field: str) -> list[dict]:
    """One result per value of ``field`` (the most recent: a re-evaluation supersedes the
    earlier one), sorted by that value."""
    latest = {r[field]: r for r in sorted(results, key=lambda r: r["created"])}
    return [latest[value] for value in sorted(latest)]


MATRIX_TITLE = "Success % by task"


def short_task(task: str) -> str:
    """``AEM/PutBackBlock-Cluttered-v1`` -> ``PutBackBlock-v1``: a matrix column's header (the
    section names the scene)."""
    name, version = task.removeprefix("AEM/").rsplit("-", 1)
    for suffix in ("-Cluttered", "-Randomized"):
        name = name.removesuffix(suffix)
    return f"{name}-{version}"


def _matrix_table(results: list[dict], aggregates: dict[str, dict]) -> Table:
    """Policies as rows, the section's tasks as columns (success %; the interval on hover), then
    the mean and IQM across tasks (where they can be computed) and the 95th-percentile latency
    (the median over tasks). Rows with
    the most tasks first, then by IQM and mean."""
    tasks = sorted({r["task"] for r in results})
    policies = sorted({r["policy"] for r in results})
    by_policy = {p: {r["task"]: r for r in latest_by([r for r in results if r["policy"] == p],
                                                     "task")} for p in policies}

    def order(policy: str):
        aggregate = aggregates.get(policy)
        return (-len(by_policy[policy]), -(aggregate["iqm"] if aggregate else -1),
                -(aggregate["mean"] if aggregate else -1), policy)

    columns = (Column("Policy", False, None),
               *(Column(short_task(task), True, None) for task in tasks),
               Column("Tasks", True, None), Column("Mean %", True, None),
               Column("IQM %", True, None), Column("Latency ms (p95)", True, None))
    rows, hovers = [], []
    for policy in sorted(policies, key=order):
        mine, aggregate = by_policy[policy], aggregates.get(policy)
        labelled = any(training_labels(r) for r in mine.values())
        cells, tips = [policy + (LABELS_MARK if labelled else "")], [""]
        for task in tasks:
            result = mine.get(task)
            cells.append(NO_VALUE if result is None else f"{100 * result['success_rate']:.0f}")
            tips.append("" if result is None else
                        f"{short_task(task)}: {result['successes']}/{result['episodes']}, 95% CI "
                        f"{100 * result['success_ci95'][0]:.0f}-"
                        f"{100 * result['success_ci95'][1]:.0f}%")
        cells.append(str(len(mine)))
        tips.append("")
        for key in ("mean", "iqm"):
            cells.append(NO_VALUE if aggregate is None else f"{100 * aggregate[key]:.0f}")
            tips.append("" if aggregate is None else
                        f"95% CI {100 * aggregate[key + '_ci95'][0]:.0f}-"
                        f"{100 * aggregate[key + '_ci95'][1]:.0f}%")
        # p95, not the median call: a policy that predicts a chunk answers most calls from it.
        cells.append(f"{statistics.median(r['latency_ms']['p95'] for r in mine.values()):.1f}")
        tips.append("")
        rows.append(cells)
        hovers.append(tips)
    return Table(MATRIX_TITLE, columns, rows,
                 "Success % of each policy's latest results file per task (its 95% interval in "
                 "the task's table below, and on hover on the page); mean and IQM across the "
                 "tasks a policy covers, with rliable intervals, where it has two or more with "
                 "per-episode records and equal episode counts; latency: the 95th percentile of the "
                 "policy's calls, the median over its tasks."
                 + (" " + LABELS_NOTE if any(LABELS_MARK in row[0] for row in rows) else ""),
                 hovers)


def _aggregates(suite: str, variant: str, results: list[dict]) -> tuple[list[dict], list[str]]:
    """Each policy's rliable aggregate across the section's tasks, and those left out (why)."""
    suite_tasks = sum(scene_of(task) == (suite, variant) for task in current_tasks())
    aggregates, left_out = [], []
    for policy in sorted({r["policy"] for r in results}):
        mine = latest_by([r for r in results if r["policy"] == policy], "task")
        if len(mine) < 2:
            continue  # one task: its own table says it all
        try:
            aggregate = aggregate_success(mine)
        except ValueError as err:  # no records, or unequal episode counts
            left_out.append(f"{policy} ({err})")
            continue
        aggregates.append({
            **aggregate,
            "policy": policy,
            "encoder": mine[0]["encoder"],
            "head": mine[0]["head"],
            "suite_tasks": suite_tasks,
            "median_latency_ms": statistics.median(r["latency_ms"]["median"] for r in mine),
        })
    return aggregates, left_out


def _aggregate_table(aggregates: list[dict], left_out: list[str]) -> Table | None:
    if not aggregates and not left_out:
        return None
    aggregates.sort(key=lambda a: (-a["iqm"], -a["mean"], a["median_latency_ms"], a["policy"]))
    note = f"Not aggregated: {'; '.join(left_out)}." if left_out else ""
    return _table(AGGREGATE_TITLE, AGGREGATE_COLUMNS, aggregates, note)


def _task_table(task: str, results: list[dict]) -> Table:
    # Best first; ties go to the faster policy, then alphabetically, so the order is stable.
    ranked = sorted(
        results, key=lambda r: (-r["success_rate"], r["latency_ms"]["median"], r["policy"])
    )
    newer = TASKS[task].superseded_by
    title = task if newer is None else f"{task} (superseded by {newer}: not in the matrix)"
    notes = [NO_RECIPE_NOTE] if any(NO_RECIPE_MARK in policy_cell(r) for r in ranked) else []
    notes += [LABELS_NOTE] if any(training_labels(r) for r in ranked) else []
    return _table(title, TASK_COLUMNS, ranked, " ".join(notes))


# The AEM paper's ablation table (Cai et al., arXiv 2606.12499): success on RoboTwin 2.0's Handover
# Block and Place Object Basket, with a frozen DINOv2 and 100 evaluation episodes per task.
ABLATION_TITLE = "AEM ablations, as in the paper's table"
PAPER_ABLATIONS = {  # sweep row: (the paper's name, its rate on each of ABLATION_TASKS)
    "singleframe-dp": ("not in the paper's table", None, None),
    "singleframe-dp-frozen-encoder": ("not in the paper's table", None, None),
    "aem-dp-full": ("full AEM", 0.96, 0.76),
    "aem-dp-feature-add": ("feature add", 0.88, 0.52),
    "aem-dp-no-pretraining": ("Mamba without pretraining", 0.60, 0.60),
    "aem-dp-memory-only": ("memory only", 0.44, 0.36),
    "aem-dp-no-actions": ("no actions in pretraining", 0.68, 0.44),
}


def _ablation_table(results: list[dict]) -> Table | None:
    """The paper's ablation rows on its two tasks: this suite's success (and interval) beside
    the paper's, from the latest results file of each sweep row; None without any."""
    mine = [r for r in results if r["task"] in ABLATION_TASKS and r["policy"] in PAPER_ABLATIONS]
    if not any(PAPER_ABLATIONS[r["policy"]][1] is not None for r in mine):
        return None  # no ablation of AEM measured: nothing to set beside the paper
    latest = {(r["policy"], r["task"]): r for r in sorted(mine, key=lambda r: r["created"])}
    columns = [Column("Row", False, None), Column("Paper's name", False, None)]
    for task in ABLATION_TASKS:
        columns += [Column(f"{short_task(task)} % (95% CI)", True, None),
                    Column(f"{short_task(task)} paper %", True, None)]
    rows = []
    for policy in ABLATION_ROWS:
        paper_name, *paper_rates = PAPER_ABLATIONS[policy]
        cells = [policy, paper_name]
        for task, paper_rate in zip(ABLATION_TASKS, paper_rates):
            result = latest.get((policy, task))
            cells.append(NO_VALUE if result is None else
                         f"{result['successes']}/{result['episodes']}: "
                         + format_rate(result["success_rate"], result["success_ci95"]))
            cells.append(NO_VALUE if paper_rate is None else f"{100 * paper_rate:.0f}")
        rows.append(cells)
    return Table(ABLATION_TITLE, tuple(columns), rows,
                 "The AEM paper's ablations (one change each from its full method) made by "
                 "`aem-bench sweep --protocol standard --rows` with these rows, beside the paper's "
                 "success rates. The settings differ: the paper pretrains over a frozen DINOv2 "
                 "and evaluates 100 episodes; here AEM reads the single-frame DP's frozen ResNet "
                 "(64x64 camera, 50 demonstrations, 2,000 steps, "
                 f"{_episode_counts(latest.values())} episodes, one training seed), so compare "
                 "the order of the rows more than their values.")


PROBE_TITLE = "Memory probes: is the fact held, and is it used?"


def _percent(entry: dict, key: str) -> str:
    """``KEY_accuracy`` as a percentage, with ``KEY_ci95`` when the probe gives it."""
    value = entry.get(f"{key}_accuracy")
    if value is None:
        return NO_VALUE
    interval = entry.get(f"{key}_ci95")
    return f"{100 * value:.0f}" if interval is None else format_rate(value, interval)


def probe_table(probes: list[dict]) -> Table | None:
    """One row per memory probe (``aem-bench probe``): what the memory holds at the probed step,
    beside the frame, the joints and a random memory, and the memory-swap test's rate."""
    if not probes:
        return None
    columns = tuple(Column(header, numeric, None) for header, numeric in (
        ("Task", False), ("Checkpoint", False), ("Memory", False), ("Probed at", False),
        ("Memory % (95% CI)", True), ("Frame + qpos %", True), ("qpos %", True),
        ("Random memory %", True), ("Acts on memory % (95% CI)", True),
        ("Acts on the fact % (95% CI)", True)))
    rows = [[short_task(p["task"]), p["checkpoint"].rstrip("/").split("/")[-1], p["memory"],
             p["step"], _percent(p, "probe"), _percent(p, "frame_probe"),
             _percent(p, "qpos_probe"), _percent(p, "random_memory_probe"),
             *(NO_VALUE if p.get(f"{key}_rate") is None else
               format_rate(p[f"{key}_rate"], p[f"{key}_ci95"]) for key in ("memory_use", "fact_use"))]
            for p in sorted(probes, key=lambda p: (p["task"], p["checkpoint"]))]
    return Table(PROBE_TITLE, columns, rows,
                 "`aem-bench probe` on held-out expert episodes: a linear probe (logistic "
                 "regression, whole episodes held out) for the hidden fact at the decision step, "
                 "or for a pooled target at its rows (SwapBlocks: the moves done as each move "
                 "begins), read from the memory, from the frame's features and the joints, from "
                 "the joints alone and from a memory of the same shape with random weights; 95% "
                 "Wilson intervals. The last two columns are the memory-swap test (the same frame, "
                 "joints and noise, another memory vector): how often the head's actions come "
                 "closer to the expert's with its own memory than with that of a row with another "
                 "fact, and with that of another episode with the same fact than with another "
                 "fact's; 50% means the head does not act on its memory, or not on the fact in "
                 "it. '-': not measured (a frame stack's random memory; probes made before the "
                 "swap test).")


def _episode_counts(results) -> str:
    """The evaluation episodes of ``results``: "100", or "50 and 100" when they differ."""
    counts = sorted({r["episodes"] for r in results})
    return " and ".join(str(count) for count in counts)


def protocol_note(protocol: Protocol) -> str:
    """What the protocol fixes, in a sentence, from the protocol itself."""
    budgets = ", a task with a budget of its own (a memory task's certificate's) at that" \
        if protocol.budgets else ""
    return (f"`aem-bench sweep --protocol {protocol.name}`: {protocol.demos} demonstrations and "
            f"{protocol.train_steps:,} training steps of batch {protocol.batch_size} per "
            f"task{budgets}, {protocol.camera}x{protocol.camera} camera, "
            f"{protocol.eval_episodes} evaluation episodes from seed {protocol.eval_seed}")


def under_protocol(result: dict, protocol: Protocol) -> bool:
    """Was ``result`` made as ``protocol`` makes its task's cells? By the protocol the result
    records (a sweep's or a submission's: the same :meth:`Protocol.cell_recipe`), or, for a
    result made before results recorded it, by its training recipe (demonstrations, steps,
    batch, seed, camera); either way evaluated on the protocol's episodes and seeds."""
    task = TASKS[result["task"]].base_id
    if task not in protocol.tasks or result["episodes"] != protocol.eval_episodes \
            or min(result["seeds"]) < protocol.eval_seed:
        return False
    training = result.get("training") or {}
    recorded = training.get("protocol") or (result.get("submission") or {}).get("protocol")
    if recorded is not None:
        return Protocol.from_dict(recorded).cell_recipe(task) == protocol.cell_recipe(task)
    recipe = training.get("recipe") or {}
    camera = (recipe.get("config_overrides") or {}).get("image_size")
    return ((recipe.get("demo_episodes"), recipe.get("steps"), recipe.get("batch_size"),
             recipe.get("seed"), camera)
            == (*protocol.budget(task), protocol.batch_size, protocol.train_seed,
                [protocol.camera, protocol.camera]))


def in_matrix(result: dict, protocol: Protocol | None) -> bool:
    """Does ``result`` belong in its suite's matrix: a current task's, made under ``protocol``
    (any, without one)?"""
    return TASKS[result["task"]].superseded_by is None and (
        protocol is None or under_protocol(result, protocol))


def build_sections(results: list[dict], protocol: Protocol | None = None,
                   probes: list[dict] | None = None) -> list[Section]:
    """Validated results grouped by suite and variant, each with its matrix (policies x tasks),
    its aggregate table and a table per task. With ``protocol``, the matrices and aggregates
    hold only the results made under it (:func:`under_protocol`), so that every number in one
    compares with every other; the tables per task keep them all. ``probes`` (memory probes)
    go into the memory suite's clean section, after its matrix and aggregates."""
    sections = []
    for suite in SUITES:
        for variant in VARIANTS:
            mine = [r for r in results if scene_of(r["task"]) == (suite, variant)]
            if not mine:
                continue
            tables = [
                _task_table(task, [r for r in mine if r["task"] == task])
                for task in sorted({r["task"] for r in mine})
            ]
            # The matrix and aggregates are of the suite's current tasks; a superseded version
            # keeps its own table.
            current = [r for r in mine if in_matrix(r, protocol)]
            if current:
                aggregates, left_out = _aggregates(suite, variant, current)
                if aggregate := _aggregate_table(aggregates, left_out):
                    tables.insert(0, aggregate)
                matrix = _matrix_table(current, {a["policy"]: a for a in aggregates})
                if protocol is not None:
                    matrix = replace(matrix, note=(
                        f"Only results made under the '{protocol.name}' protocol "
                        f"({protocol_note(protocol)}); the tables of single tasks below hold "
                        f"every result. {matrix.note}"))
                tables.insert(0, matrix)
            if (suite, variant) == ("manipulation", "clean") and (ablations := _ablation_table(mine)):
                # After the matrix and the aggregates, before the tables of single tasks.
                tables.insert(len(tables) - len({r["task"] for r in mine}), ablations)
            if (suite, variant) == ("memory", "clean") and (held := probe_table(probes or [])):
                tables.insert(len(tables) - len({r["task"] for r in mine}), held)
            sections.append(Section(suite, variant, tables))
    return sections
