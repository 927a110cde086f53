"""Render validated results files as a Markdown leaderboard: one table per (task, variant)."""

from __future__ import annotations

import os
import re
from itertools import groupby
from pathlib import Path

from tabulate import tabulate

from .results import load_results

HEADERS = [
    "Policy",
    "Success % (95% CI)",
    "Episodes",
    "Eval seeds",
    "Latency ms (median / p95)",
    "Hardware",
    "Commit",
]

FOOTER = (
    "Produced by `aem_bench.evaluator.evaluate`: each policy runs the listed number of episodes on "
    "the first seeds of the listed range that the scripted expert solves (RoboTwin's protocol; "
    "results files from before it used consecutive seeds), success is `info['is_success']` at "
    "the end of an episode, the interval is "
    "the 95% Wilson score interval, and latency is the wall time of each `policy.act` call "
    "(median / 95th percentile over all calls) on the hardware shown."
)


def _short_cpu(hardware: dict) -> str:
    # "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz" -> "Intel Xeon Platinum 8481C"
    cpu = re.sub(r"\((R|TM)\)|\bCPU\b|@.*$|\b\d+-Core Processor\b", "", hardware["cpu"])
    return f"{' '.join(cpu.split())}, {hardware['cores']} cores"


def _seed_range(seeds: list[int]) -> str:
    # Consecutive seeds (the evaluator's default) read as a range; anything else as a count.
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return f"{len(seeds)} seeds"


def _row(result: dict) -> list:
    lo, hi = result["success_ci95"]
    latency = result["latency_ms"]
    return [
        result["policy"],
        f"{100 * result['success_rate']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]",
        result["episodes"],
        _seed_range(result["seeds"]),
        f"{latency['median']:.2f} / {latency['p95']:.2f}",
        _short_cpu(result["hardware"]),
        (result["git_commit"] or "-")[:7],
    ]


def render_markdown(results: list[dict]) -> str:
    """Markdown with a section per (task, variant), best success rate first."""
    lines = ["# aem-bench leaderboard", ""]
    if not results:
        lines += ["_No results yet._", ""]

    def group_key(result: dict) -> tuple[str, str]:
        return result["task"], result.get("variant", "clean")

    for (task, variant), group in groupby(sorted(results, key=group_key), key=group_key):
        # Ties go to the faster policy, then alphabetically, so the order is stable.
        ranked = sorted(
            group, key=lambda r: (-r["success_rate"], r["latency_ms"]["median"], r["policy"])
        )
        table = tabulate(
            [_row(r) for r in ranked], headers=HEADERS, tablefmt="github", disable_numparse=True
        )
        lines += [f"## {task} ({variant})", "", table, ""]
    lines.append(FOOTER)
    return "\n".join(lines) + "\n"


def write_leaderboard(results_dir: str | os.PathLike, out_path: str | os.PathLike) -> str:
    """Validate every results file in ``results_dir``, write the Markdown, and return it."""
    markdown = render_markdown(load_results(results_dir))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(markdown)
    return markdown
