"""Write the whole leaderboard from a results directory: README.md, index.html and the plots.

All three come from one validation and one bootstrap per policy, so they always agree.
"""

from __future__ import annotations

import os
from pathlib import Path

from aem_bench.recipe import Protocol

from .page import render_html
from .plots import CAPTIONS, render_plots
from .results import load_probes, load_results
from .sections import build_sections, in_matrix
from .table import render_markdown

PLOTS_DIR = "plots"  # next to the Markdown file
PAGE = "index.html"


def write_leaderboard(results_dir: str | os.PathLike, out_path: str | os.PathLike,
                      protocol: Protocol | None = None,
                      probes_dir: str | os.PathLike | None = None) -> list[Path]:
    """Validate every results file in ``results_dir``; write the Markdown to ``out_path``, and
    ``index.html`` and ``plots/*.png`` beside it. With ``protocol``, the matrices hold only the
    results made under it (``build_sections``). The memory probes of ``probes_dir`` (default:
    ``probes/`` beside ``results_dir``) are shown with the memory suite. Returns the paths
    written, Markdown first."""
    results = load_results(results_dir)
    probes = load_probes(Path(results_dir).parent / "probes" if probes_dir is None
                         else probes_dir)
    sections = build_sections(results, protocol, probes)
    plots = render_plots([r for r in results if in_matrix(r, protocol)])  # what the matrices show

    out_path = Path(out_path)
    plots_dir = out_path.parent / PLOTS_DIR
    plots_dir.mkdir(parents=True, exist_ok=True)
    written = [out_path, out_path.parent / PAGE]
    for name, png in plots.items():
        (plots_dir / name).write_bytes(png)
        written.append(plots_dir / name)

    markdown_plots = {CAPTIONS[name]: f"{PLOTS_DIR}/{name}" for name in plots}
    out_path.write_text(render_markdown(sections, markdown_plots))
    page_plots = {CAPTIONS[name]: png for name, png in plots.items()}
    (out_path.parent / PAGE).write_text(render_html(sections, page_plots))
    return written
