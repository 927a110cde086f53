"""Render the leaderboard's sections as one self-contained HTML page: ``leaderboard/index.html``.

The page must open from disk with no network: the style and a small table sorter are inline and
the plots are embedded as PNG data URIs. Every string from a results file goes through
``html.escape``, since a policy name is whatever its author typed.
"""

from __future__ import annotations

import base64
import re
from html import escape

from .sections import FOOTER, SUITES, TITLE, VARIANTS, Section, Table

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
.scroll { overflow-x: auto; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th[data-numeric], td.numeric { text-align: right; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #fafafa; }
.note { color: #555; font-style: italic; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; }
.filters label { margin-right: 1.5em; }
td[title] { text-decoration: underline dotted #999; cursor: help; }
footer { color: #555; border-top: 1px solid #ccc; margin-top: 2em; padding-top: 1em; }
"""

# Click a header to sort by it; click again to reverse. Numeric columns compare the number each
# cell starts with ("94.0 [83.8, 97.9]" -> 94.0); cells without one ('-') go last either way.
SORTER = """
function sortTable(table, header, column) {
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const numeric = header.hasAttribute("data-numeric");
  const key = (row) => {
    const text = row.cells[column].textContent.trim();
    return numeric ? parseFloat(text) : text;
  };
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (numeric && (isNaN(x) || isNaN(y))) return isNaN(x) - isNaN(y);
    const order = numeric ? x - y : x.localeCompare(y);
    return ascending ? order : -order;
  });
  body.append(...rows);
}
function filter() {
  const suite = document.getElementById("filter-suite").value;
  const scene = document.getElementById("filter-scene").value;
  for (const section of document.querySelectorAll("section[data-suite]")) {
    const shown = (!suite || section.dataset.suite === suite)
      && (!scene || section.dataset.scene === scene);
    section.hidden = !shown;
  }
}
for (const table of document.querySelectorAll("table.sortable")) {
  Array.from(table.tHead.rows[0].cells).forEach((header, column) => {
    header.addEventListener("click", () => sortTable(table, header, column));
  });
}
"""


def _html_table(table: Table) -> str:
    headers = "".join(
        f"<th scope=\"col\"{' data-numeric' if column.numeric else ''}>"
        f"{escape(column.header)}</th>"
        for column in table.columns
    )
    classes = [' class="numeric"' if column.numeric else "" for column in table.columns]
    hovers = table.hovers or [[""] * len(table.columns)] * len(table.rows)

    def cell_html(css: str, cell: str, tip: str) -> str:
        title = f' title="{escape(tip)}"' if tip else ""
        return f"<td{css}{title}>{escape(cell)}</td>"

    rows = "\n".join(
        "<tr>" + "".join(cell_html(*cell) for cell in zip(classes, row, tips, strict=True))
        + "</tr>"
        for row, tips in zip(table.rows, hovers, strict=True)
    )
    parts = [
        f"<h3>{escape(table.title)}</h3>",
        # The scroll box keeps a wide table from widening the whole page.
        f"<div class=\"scroll\"><table class=\"sortable\">\n<thead><tr>{headers}</tr></thead>",
        f"<tbody>\n{rows}\n</tbody>\n</table></div>",
    ]
    if table.note:
        parts.append(f"<p class=\"note\">{escape(table.note)}</p>")
    return "\n".join(parts)


def _filters() -> str:
    """Two menus that show only the sections of one suite and one scene."""
    def menu(name: str, values: list[str]) -> str:
        options = "".join(f"<option value=\"{v}\">{escape(v)}</option>" for v in values)
        return (f"<label>{name.capitalize()} <select id=\"filter-{name}\" onchange=\"filter()\">"
                f"<option value=\"\">all</option>{options}</select></label>")

    return f"<p class=\"filters\">{menu('suite', SUITES)} {menu('scene', VARIANTS)}</p>"


def _inline_code(text: str) -> str:
    """Escape ``text`` and turn its Markdown `code` spans into <code> elements."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


def render_html(sections: list[Section], plots: dict[str, bytes] | None = None) -> str:
    """The sections of ``build_sections`` as a page; ``plots`` maps a caption to PNG bytes."""
    body = []
    if not sections:
        body.append("<p><em>No results yet.</em></p>")
    else:
        body.append("<p>Click a column header to sort by it; click it again to reverse.</p>")
    if sections:
        body.append(_filters())
    for section in sections:
        body.append(f"<section data-suite=\"{section.suite}\" data-scene=\"{section.variant}\">"
                    f"\n<h2>{escape(section.title)}</h2>")
        body += [_html_table(table) for table in section.tables]
        body.append("</section>")
    if plots:
        body.append("<section>\n<h2>Plots</h2>")
        for caption, png in plots.items():
            data = base64.b64encode(png).decode("ascii")
            body.append(
                f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{escape(caption)}\">"
                f"<figcaption>{escape(caption)}</figcaption></figure>"
            )
        body.append("</section>")
    content = "\n".join(body)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{escape(TITLE)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{escape(TITLE)}</h1>
{content}
<footer><p>{_inline_code(FOOTER)}</p></footer>
<script>{SORTER}</script>
</body>
</html>
"""
