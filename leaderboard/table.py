"""Render the leaderboard's sections as Markdown: the README of ``leaderboard/``."""

from __future__ import annotations

from html import escape

from tabulate import tabulate

from .sections import FOOTER, TITLE, Section


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    # Markdown passes HTML through, and a '|' would end a cell early: a policy name must show as
    # typed.
    rows = [[escape(cell, quote=False).replace("|", r"\|") for cell in row] for row in rows]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def render_markdown(sections: list[Section], plots: dict[str, str] | None = None) -> str:
    """The sections of ``build_sections`` as Markdown; ``plots`` maps a caption to an image path."""
    lines = [f"# {TITLE}", ""]
    if not sections:
        lines += ["_No results yet._", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for table in section.tables:
            lines += [f"### {table.title}", "", markdown_table(table.headers, table.rows), ""]
            if table.note:
                lines += [f"_{escape(table.note, quote=False)}_", ""]
    if plots:
        lines += ["## Plots", ""]
    for caption, path in (plots or {}).items():
        lines += [f"![{caption}]({path})", ""]
    lines.append(FOOTER)
    return "\n".join(lines) + "\n"
