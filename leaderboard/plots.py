"""Leaderboard figures as PNG bytes: success against policy latency, and success per task.

The figures are drawn on bare ``matplotlib.figure.Figure`` objects (the Agg canvas, no pyplot
state) and saved without a "Software" entry, so the same results give byte-identical files and a
rerun does not churn them in git.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .sections import latest_by

SUCCESS_VS_LATENCY = "success_vs_latency.png"
PER_TASK_SUCCESS = "per_task_success.png"
CAPTIONS = {
    SUCCESS_VS_LATENCY: "Success against 95th-percentile policy latency (one point per results "
                        "file)",
    PER_TASK_SUCCESS: "Success per task (one bar per policy)",
}
MARKERS = "osD^vP*Xh<>"
# A zero latency has no place on a log axis: draw it at this floor.
MIN_LATENCY_MS = 1e-3


def _policy_colours(results: list[dict]) -> dict[str, tuple]:
    policies = sorted({r["policy"] for r in results})
    palette = colormaps["tab10" if len(policies) <= 10 else "tab20"]
    return {policy: palette(i % palette.N) for i, policy in enumerate(policies)}


def _error_bars(results: list[dict]) -> np.ndarray:
    """Wilson interval ends as distances below and above each rate, in percent."""
    distances = np.array([
        [r["success_rate"] - r["success_ci95"][0] for r in results],
        [r["success_ci95"][1] - r["success_rate"] for r in results],
    ])
    # The schema lets an end miss the rate by rounding; matplotlib rejects negative bars.
    return 100 * np.clip(distances, 0, None)


def _label_twos_and_fives(x: float, _position) -> str:
    # Minor ticks of a log axis: label 2 and 5 of each decade, enough to read a point off.
    return f"{x:g}" if f"{x:.0e}"[0] in "25" else ""


def _to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def success_vs_latency(figure: Figure, results: list[dict]) -> None:
    ax = figure.add_subplot()
    colours = _policy_colours(results)
    tasks = sorted({r["task"] for r in results})
    # The 95th percentile, not the median: a policy that predicts a chunk of actions answers most
    # calls from the chunk in microseconds, and its median hides what a prediction costs.
    latencies = [max(r["latency_ms"]["p95"], MIN_LATENCY_MS) for r in results]
    for result, latency in zip(results, latencies, strict=True):
        ax.errorbar(
            latency,
            100 * result["success_rate"],
            yerr=_error_bars([result]),
            fmt=MARKERS[tasks.index(result["task"]) % len(MARKERS)],
            color=colours[result["policy"]],
            capsize=3,
            markersize=7,
        )
    ax.set_xscale("log")
    # Whole decades, labelled plainly: latencies of different policies span orders of magnitude.
    low, high = np.floor(np.log10(min(latencies))), np.ceil(np.log10(max(latencies)))
    ax.set_xlim(10**low, 10 ** max(high, low + 1))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(ticker.FuncFormatter(_label_twos_and_fives))
    ax.set_xlabel("Policy latency per call, 95th percentile (ms, log scale)")
    ax.set_ylabel("Success % (95% Wilson interval)")
    ax.set_ylim(-3, 103)
    ax.grid(True, which="both", alpha=0.3)
    policy_handles = [
        Line2D([], [], color=colour, marker="o", ls="", label=policy)
        for policy, colour in colours.items()
    ]
    task_handles = [
        Line2D([], [], color="grey", marker=MARKERS[i % len(MARKERS)], ls="", label=task)
        for i, task in enumerate(tasks)
    ]
    figure.legend(handles=policy_handles, title="Policy", fontsize="small",
                  loc="outside right upper")
    figure.legend(handles=task_handles, title="Task", fontsize="small", loc="outside right lower")


def per_task_success(figure: Figure, results: list[dict]) -> None:
    ax = figure.add_subplot()
    colours = _policy_colours(results)
    by_task = {task: latest_by([r for r in results if r["task"] == task], "policy")
               for task in sorted({r["task"] for r in results})}
    # Each task's bars side by side around its tick, in the same order and colours everywhere.
    width = 0.8 / max(len(group) for group in by_task.values())
    for position, group in enumerate(by_task.values()):
        offsets = (np.arange(len(group)) - (len(group) - 1) / 2) * width
        ax.bar(position + offsets, [100 * r["success_rate"] for r in group], width,
               color=[colours[r["policy"]] for r in group], yerr=_error_bars(group), capsize=3)
    tasks = list(by_task)
    ax.set_xticks(range(len(tasks)), [task.removeprefix("AEM/") for task in tasks],
                  rotation=20 if len(tasks) > 4 else 0, ha="right" if len(tasks) > 4 else "center")
    ax.set_ylabel("Success % (95% Wilson interval)")
    ax.set_ylim(0, 103)
    ax.grid(True, axis="y", alpha=0.3)
    handles = [Patch(color=colour, label=policy) for policy, colour in colours.items()]
    figure.legend(handles=handles, title="Policy", fontsize="small", loc="outside right upper")


def render_plots(results: list[dict]) -> dict[str, bytes]:
    """File name -> PNG bytes, for every figure of the leaderboard."""
    pngs = {}
    for name, draw in ((SUCCESS_VS_LATENCY, success_vs_latency),
                       (PER_TASK_SUCCESS, per_task_success)):
        figure = Figure(figsize=(9, 4.5), layout="constrained")
        if results:
            draw(figure, results)
        else:
            figure.text(0.5, 0.5, "No results yet", ha="center", va="center")
        pngs[name] = _to_png(figure)
    return pngs
