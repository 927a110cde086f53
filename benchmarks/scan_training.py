"""The Mamba's selective scan trained through a whole episode on one CPU core: the loop
differentiated by autograd (``selective_scan_reference``) against the same loop with its
backward written out (``selective_scan``), side by side in one process, into BENCHMARKS.md.

    .venv/bin/python benchmarks/scan_training.py            # pinned to CPU 0, one torch thread
    .venv/bin/python benchmarks/scan_training.py --print    # only print the table

The shapes are those of fine-tuning AEM's history with the head (``aem-dp`` under the
``episode-causal-finetune`` ablation): 8 whole episodes a step, d_inner 128, d_state 16, two
tokens per environment step. Every number is the median of ``--reps`` repetitions, the two
scans interleaved so that a slow minute of this shared machine falls on both alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- scan-training:begin -->", "<!-- scan-training:end -->"
TOKENS = (64, 400, 860)  # a 32-step window; PutBackBlock's episodes; SwapBlocks-v1's


def inputs(length: int, batch: int = 8, d_inner: int = 128, d_state: int = 16):
    g = torch.Generator().manual_seed(0)

    def leaf(*shape, transform=lambda t: t):
        return transform(torch.randn(*shape, generator=g)).requires_grad_()

    return (leaf(batch, d_inner, length),
            leaf(batch, d_inner, length, transform=lambda t: F.softplus(t - 2)),
            -torch.arange(1, d_state + 1.0).repeat(d_inner, 1).requires_grad_(),
            leaf(batch, d_state, length), leaf(batch, d_state, length), leaf(d_inner),
            leaf(batch, d_inner, length))


def seconds(scan, args) -> float:
    started = time.perf_counter()
    y, h = scan(*args)
    (y.square().mean() + h.square().mean()).backward()
    return time.perf_counter() - started


def measure(reps: int) -> list[list[str]]:
    from aem_bench.policies.mamba import selective_scan, selective_scan_reference

    rows = []
    for length in TOKENS:
        args = inputs(length)
        times = {"reference": [], "written-out": []}
        for _ in range(reps):
            times["reference"].append(seconds(selective_scan_reference, args))
            times["written-out"].append(seconds(selective_scan, args))
        ref, ours = (statistics.median(times[k]) for k in ("reference", "written-out"))
        rows.append([str(length), f"{1000 * ref:.0f}", f"{1000 * ours:.0f}", f"{ref / ours:.1f}x"])
    return rows


def table(rows: list[list[str]], reps: int) -> str:
    from tabulate import tabulate

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "\n".join([
        "## The Mamba scan trained through whole episodes (issue 16)",
        "",
        ("Forward and backward of one selective scan layer at fine-tuning's shapes (8 episodes, "
        "d_inner 128, d_state 16), milliseconds, median of "
        f"{reps}, interleaved; `benchmarks/scan_training.py` on {cpu}, one core, one torch "
        f"thread, torch {torch.__version__}."),
        "",
        tabulate(rows, headers=["tokens", "autograd through the loop (ms)",
                                "backward written out (ms)", "speed-up"], tablefmt="github"),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--print", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    torch.set_num_threads(1)
    block = table(measure(args.reps), args.reps)
    print(block)
    if args.print:
        return
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text()
    wrapped = f"{BEGIN}\n{block}\n{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: wrapped, text,
                      flags=re.DOTALL)
    else:
        text = text.rstrip("\n") + "\n\n" + wrapped + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
