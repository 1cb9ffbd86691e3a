"""A comparison's summary as a markdown table (means, intervals, within-noise / better / worse
marks) and as a small self-contained HTML page."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from polytask.compare.stats import SINGLE_TASK


#: within-noise / better / worse marks in the tables
WITHIN, BETTER, WORSE = "≈", "▲", "▼"


def markdown_table(
    summary: Mapping[str, Mapping[str, Any]],
    tasks: Sequence[str],
    metrics: Mapping[str, Sequence[str]],
    *,
    digits: int = 4,
    extra: Mapping[str, Mapping[str, str]] | None = None,
    ci: bool = False,
    baseline: str | None = None,
) -> str:
    """A markdown table: one row per model, ``mean ± std`` per task metric, Delta-m, parameters.

    ``ci=True`` adds the 95% interval of every mean (``[low, high]``) and of Delta-m, and marks
    each metric's difference from ``baseline`` (paired by seed): ≈ within noise (the interval of
    the difference includes 0), ▲ better, ▼ worse beyond noise."""
    extra_cols = sorted({c for cols in (extra or {}).values() for c in cols})
    stl = f"vs {baseline}" if baseline else "vs STL"
    header = (["model"] + [f"{t} {m}" for t in tasks for m in metrics[t]]
              + [f"Δm % ({stl}){' [95% CI]' if ci else ''}", "params"] + extra_cols)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, entry in summary.items():
        cells = [label]
        for t in tasks:
            for m in metrics[t]:
                s = entry[t][m]
                text = f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"
                if ci:
                    text += _interval(s, digits) + _mark(s.get("vs_baseline"))
                cells.append(text)
        d = entry["delta_m"]
        if d["n"] == 0 or (ci and label == baseline):
            cells.append("—")
        else:
            text = f"{d['mean']:+.2f} ± {d['std']:.2f}"
            if ci:
                text += _interval(d, 2, signed=True) + _mark({**d, "better": d["mean"] > 0} if d["n"] else None)
            cells.append(text)
        params = entry.get("parameters")
        cells.append(f"{params:,}" if isinstance(params, int) else "—")
        cells += [(extra or {}).get(label, {}).get(c, "") for c in extra_cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval(s: Mapping[str, Any], digits: int, signed: bool = False) -> str:
    if s["n"] < 2 or math.isnan(s["ci"]):
        return ""
    sign = "+" if signed else ""
    return f" [{s['low']:{sign}.{digits}f}, {s['high']:{sign}.{digits}f}]"


def _mark(diff: Mapping[str, Any] | None) -> str:
    if not diff:
        return ""
    noise = diff.get("within_noise")
    if noise is None:
        return ""
    if noise:
        return f" {WITHIN}"
    return f" {BETTER}" if diff.get("better") else f" {WORSE}"


FOOTNOTE = (f"Mean ± std over seeds [95% Student-t interval of the mean]. Marks compare with {SINGLE_TASK}, paired by "
            f"seed: {WITHIN} within noise (the 95% interval of the per-seed difference includes 0), {BETTER} better / "
            f"{WORSE} worse beyond noise. Δm: multi-task gain in % over {SINGLE_TASK} (higher is better), per seed, "
            "then averaged.")


def html_table(markdown: str, title: str, notes: Sequence[str] = ()) -> str:
    """A small self-contained HTML page (no script, no external resource) showing a markdown
    table as an HTML table, with a title and notes."""
    lines = [ln for ln in markdown.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]

    def cell(tag: str, text: str) -> str:
        cls = ""
        if text.endswith(WITHIN):
            cls = ' class="noise"'
        elif text.endswith(BETTER):
            cls = ' class="better"'
        elif text.endswith(WORSE):
            cls = ' class="worse"'
        return f"<{tag}{cls}>{html.escape(text)}</{tag}>"

    rows = "\n".join("<tr>" + "".join(cell("td", c) for c in r) + "</tr>" for r in body)
    style = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
             "table{border-collapse:collapse;font-size:14px}"
             "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}"
             "th:first-child,td:first-child{text-align:left;font-weight:600}th{background:#f3f3f3}"
             ".noise{color:#555}.better{background:#e6f4ea}.worse{background:#fce8e6}p{max-width:60em}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{style}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n<table>\n"
            f"<thead><tr>{''.join(cell('th', h) for h in header)}</tr></thead>\n"
            f"<tbody>\n{rows}\n</tbody>\n</table>\n"
            + "".join(f"<p>{html.escape(n)}</p>\n" for n in notes) + "</body></html>\n")
