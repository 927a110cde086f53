"""Leaderboard figures as PNG bytes: success against policy latency, and a success heat map.

The figures are drawn on bare ``matplotlib.figure.Figure`` objects (the Agg canvas, no pyplot
state) and saved without a "Software" entry, so the same results give byte-identical files and a
rerun does not churn them in git.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.figure import Figure

from .sections import SUITES, latest_by, scene_of, short_task

SUCCESS_VS_LATENCY = "success_vs_latency.png"
SUCCESS_HEATMAP = "success_heatmap.png"
CAPTIONS = {
    SUCCESS_VS_LATENCY: "Mean success across a suite's tasks against 95th-percentile policy "
                        "latency, clean scene, the matrices' results (one point per policy; n: "
                        "its tasks)",
    SUCCESS_HEATMAP: "Success % per policy and task, clean scene, the matrices' results "
                     "(blank: not run)",
}
# A zero latency has no place on a log axis: draw it at this floor.
MIN_LATENCY_MS = 1e-3


def _policy_colours(results: list[dict]) -> dict[str, tuple]:
    policies = sorted({r["policy"] for r in results})
    palette = colormaps["tab10" if len(policies) <= 10 else "tab20"]
    return {policy: palette(i % palette.N) for i, policy in enumerate(policies)}


def _label_twos_and_fives(x: float, _position) -> str:
    # Minor ticks of a log axis: label 2 and 5 of each decade, enough to read a point off.
    return f"{x:g}" if f"{x:.0e}"[0] in "25" else ""


def _to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _clean_by_suite(results: list[dict]) -> dict[str, dict[str, dict[str, dict]]]:
    """suite -> policy -> task -> its latest clean-scene result."""
    grouped: dict[str, dict[str, dict[str, dict]]] = {}
    for suite in SUITES:
        mine = [r for r in results if scene_of(r["task"]) == (suite, "clean")]
        policies = sorted({r["policy"] for r in mine})
        if policies:
            grouped[suite] = {p: {r["task"]: r for r in latest_by(
                [r for r in mine if r["policy"] == p], "task")} for p in policies}
    return grouped


def success_vs_latency(figure: Figure, results: list[dict]) -> None:
    grouped = _clean_by_suite(results)
    axes = figure.subplots(1, len(grouped), squeeze=False)[0]
    for ax, (suite, by_policy) in zip(axes, grouped.items(), strict=True):
        colours = _policy_colours([{"policy": p} for p in by_policy])
        latencies = []
        for policy, by_task in by_policy.items():
            # The 95th percentile, not the median: a policy that predicts a chunk of actions
            # answers most calls from the chunk in microseconds; the median hides a prediction.
            latency = max(float(np.median([r["latency_ms"]["p95"] for r in by_task.values()])),
                          MIN_LATENCY_MS)
            success = 100 * float(np.mean([r["success_rate"] for r in by_task.values()]))
            latencies.append(latency)
            # Numbered points and a legend: names written beside the points overlap.
            number = len(latencies)
            ax.plot(latency, success, "o", color=colours[policy], markersize=9,
                    label=f"{number}. {policy} (n={len(by_task)})")
            ax.annotate(str(number), (latency, success), fontsize=7, xytext=(5, 3),
                        textcoords="offset points")
        ax.set_xscale("log")
        low, high = np.floor(np.log10(min(latencies))), np.ceil(np.log10(max(latencies)))
        ax.set_xlim(10**low, 10 ** max(high, low + 1))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(ticker.FuncFormatter(_label_twos_and_fives))
        ax.set_xlabel("Policy latency per call, p95 (ms, log scale)")
        ax.set_ylabel("Mean success % across tasks")
        ax.set_ylim(-3, 103)
        ax.set_title(f"{suite.capitalize()} suite")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def success_heatmap(figure: Figure, results: list[dict]) -> None:
    grouped = _clean_by_suite(results)
    widths = [len({t for by_task in g.values() for t in by_task}) for g in grouped.values()]
    axes = figure.subplots(1, len(grouped), squeeze=False, width_ratios=widths)[0]
    for ax, (suite, by_policy) in zip(axes, grouped.items(), strict=True):
        tasks = sorted({task for by_task in by_policy.values() for task in by_task})
        policies = list(by_policy)
        grid = np.full((len(policies), len(tasks)), np.nan)
        for i, policy in enumerate(policies):
            for j, task in enumerate(tasks):
                if task in by_policy[policy]:
                    grid[i, j] = 100 * by_policy[policy][task]["success_rate"]
        ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                        color="black" if value > 60 else "white")
        ax.set_xticks(range(len(tasks)), [short_task(t) for t in tasks], rotation=30,
                      ha="right", fontsize=8)
        ax.set_yticks(range(len(policies)), policies, fontsize=8)
        ax.set_title(f"{suite.capitalize()} suite")


def render_plots(results: list[dict]) -> dict[str, bytes]:
    """File name -> PNG bytes, for every figure of the leaderboard."""
    pngs = {}
    for name, draw in ((SUCCESS_VS_LATENCY, success_vs_latency),
                       (SUCCESS_HEATMAP, success_heatmap)):
        figure = Figure(figsize=(12, 5), layout="constrained")
        if _clean_by_suite(results):
            draw(figure, results)
        else:
            figure.text(0.5, 0.5, "No results yet", ha="center", va="center")
        pngs[name] = _to_png(figure)
    return pngs
