"""The page: escaping, tables, notes, the section frame, and the document with its inline CSS.

Every piece of text that reaches the page goes through :func:`esc` (run names, task names and
config values come from files a user may not control). The page loads nothing: no script, no font,
no stylesheet from elsewhere.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-soft: #f6f8fa; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       background: #fff; }
header.page { padding: 18px 32px 10px; border-bottom: 1px solid var(--line); background: var(--bg-soft); }
header.page h1 { margin: 0 0 4px; font-size: 22px; }
header.page p { margin: 2px 0; color: var(--muted); }
nav.toc { padding: 6px 32px; border-bottom: 1px solid var(--line); font-size: 13px; }
nav.toc a { margin-right: 14px; color: var(--accent); text-decoration: none; }
main { padding: 8px 32px 40px; max-width: 1600px; }
section.run, section.comparison { margin-top: 22px; }
section.run > h2, section.comparison > h2 { font-size: 20px; margin: 18px 0 6px; padding-bottom: 4px;
       border-bottom: 2px solid var(--fg); }
section.part { margin: 14px 0 8px; }
section.part > h3 { font-size: 15px; margin: 10px 0 6px; color: var(--fg); }
h4 { font-size: 13px; margin: 10px 0 4px; color: var(--muted); font-weight: 600; }
p.note { margin: 4px 0; color: var(--muted); font-size: 13px; }
p.warn { margin: 4px 0; color: #9a6700; font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg-soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 6px 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
div.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 10px 18px;
       align-items: start; grid-auto-flow: row dense; }
figure.plot { margin: 0; }
figure.plot.wide { grid-column: 1 / -1; }
figure.plot img { max-width: 100%; height: auto; display: block; border: 1px solid #eef0f2; }
figure.plot figcaption { font-size: 12px; color: var(--muted); margin-top: 2px; }
pre { background: var(--bg-soft); padding: 6px 8px; font-size: 12px; overflow-x: auto; }
ul.tree { margin: 4px 0; }
"""


def esc(value: Any) -> str:
    """Text for the page (quotes escaped too, so it is safe in an attribute)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A number as it is shown in a table (``—`` for none, ``nan`` for NaN); escaped text otherwise."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return esc(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** -digits):
            return f"{value:.{max(digits - 1, 1)}e}"
        return f"{value:.{digits}f}"
    return esc(value)


def note(text: str) -> str:
    """A one-line remark (something left out and why)."""
    return f'<p class="note">{esc(text)}</p>'


def warn(text: str) -> str:
    return f'<p class="warn">{esc(text)}</p>'


def heading(text: str, level: int = 4) -> str:
    return f"<h{level}>{esc(text)}</h{level}>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric_from: int = 1,
          bold: Iterable[tuple[int, int]] = ()) -> str:
    """A table: ``header`` and ``rows`` are plain values (escaped here); cells from column
    ``numeric_from`` on are right-aligned; ``bold`` lists ``(row, column)`` cells to emphasise."""
    emphasised = set(bold)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            classes = (["num"] if j >= numeric_from else []) + (["best"] if (i, j) in emphasised else [])
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{fmt(cell)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def facts(items: Sequence[tuple[str, Any]]) -> str:
    """A definition list of ``(label, value)`` (values escaped)."""
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{fmt(v)}</dd>" for k, v in items)
    return f'<dl class="facts">{rows}</dl>'


def plots(figures: Sequence[str]) -> str:
    """Figures (already HTML) in the responsive grid."""
    return f'<div class="plots">{"".join(figures)}</div>' if figures else ""


def part(anchor: str, title: str, body: str) -> str:
    """One section of a run (or of the comparison)."""
    return f'<section class="part" id="{esc(anchor)}"><h3>{esc(title)}</h3>{body}</section>'


def document(title: str, subtitle: Sequence[str], toc: Sequence[tuple[str, str]], body: str) -> str:
    """The whole page: inline CSS only, no script."""
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in toc)
    lines = "".join(f"<p>{esc(s)}</p>" for s in subtitle)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<header class="page"><h1>{esc(title)}</h1>{lines}</header>\n'
        f'<nav class="toc">{links}</nav>\n'
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
