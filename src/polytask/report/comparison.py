"""The comparison section of a report of several runs: the runs side by side (test metrics per
task), Delta-m of each run against the single-task run among them, and their validation curves
overlaid. Like a run's sections, each part is a function listed in :data:`COMPARISON_SECTIONS`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from polytask.metrics import delta_m, known_directions
from polytask.report import plots
from polytask.report.html import esc, fmt, note, plots as grid_of, table
from polytask.report.loading import RunData

#: the baseline Delta-m is measured against: the run whose config names this model
BASELINE_MODEL = "single_task"


class ComparisonSection(NamedTuple):
    key: str
    title: str
    render: Callable[[Sequence[RunData], Any], str | None]


def baseline_run(runs: Sequence[RunData]) -> RunData | None:
    """The first run whose config's ``model.name`` is ``single_task``."""
    return next((r for r in runs if r.model_name == BASELINE_MODEL), None)


def delta_m_table(runs: Sequence[RunData], split: str = "test") -> dict[str, float] | None:
    """``{run name: Delta-m in % against the single-task run}`` on ``split`` (every metric with a
    known direction, per task first, as :func:`polytask.metrics.delta_m`); None without a
    single-task run."""
    base = baseline_run(runs)
    if base is None or not isinstance(base.metrics.get(split), Mapping):
        return None
    out = {}
    for r in runs:
        method = r.metrics.get(split)
        out[r.name] = delta_m(method, base.metrics[split]) if isinstance(method, Mapping) else float("nan")
    return out


def runs_table(runs: Sequence[RunData], ctx: Any) -> str:
    rows = [[f'<a href="#{esc(anchor(i))}">{esc(r.name)}</a>', r.model_name, r.weighting_name,
             ", ".join(r.task_names), r.parameters, len(r.epochs), r.best_epoch] for i, r in enumerate(runs)]
    head = "".join(f"<th>{esc(h)}</th>" for h in ["run", "model", "weighting", "tasks", "parameters", "epochs", "best epoch"])
    body = "".join("<tr>" + f"<td>{row[0]}</td>" + "".join(f"<td>{fmt(v)}</td>" for v in row[1:4])
                   + "".join(f'<td class="num">{fmt(v)}</td>' for v in row[4:]) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def anchor(index: int) -> str:
    return f"run-{index + 1}"


def metrics_side_by_side(runs: Sequence[RunData], ctx: Any) -> str:
    split = "test"
    tasks = list(dict.fromkeys(t for r in runs for t in r.task_names))
    directions = known_directions()
    rows, bold = [], []
    for task in tasks:
        metrics = list(dict.fromkeys(m for r in runs for m in ((r.metrics.get(split) or {}).get(task) or {})
                                     if m != "count"))
        for metric in metrics:
            values = [((r.metrics.get(split) or {}).get(task) or {}).get(metric) for r in runs]
            i = len(rows)
            rows.append([task, metric, *values])
            up = directions.get(metric)
            finite = [(j, v) for j, v in enumerate(values) if isinstance(v, (int, float)) and math.isfinite(v)]
            if up is not None and len(finite) > 1:
                best = (max if up else min)(finite, key=lambda jv: jv[1])[1]
                bold += [(i, 2 + j) for j, v in finite if v == best]
    deltas = delta_m_table(runs, split)
    parts = []
    if deltas is None:
        parts.append(note(f"No single-task run among these (config model.name == {BASELINE_MODEL}): Delta-m needs one "
                          "as its baseline and is left out."))
    else:
        base = baseline_run(runs)
        assert base is not None
        rows.append(["Δm vs single-task", "% (higher is better)",
                     *[("baseline" if r is base else _signed(deltas[r.name])) for r in runs]])
        parts.append(note(
            f"Δm: the mean over tasks of each task's mean relative change against the single-task run "
            f"{base.name} over its metrics with a known direction (loss and count excluded), sign-flipped for "
            f"lower-is-better metrics, in % (polytask.metrics.delta_m). Bold: the best value of each row."))
    return "".join(parts) + table(["task", "metric", *[r.name for r in runs]], rows, numeric_from=2, bold=bold)


def _signed(value: float) -> str:
    return "nan" if value != value else f"{value:+.2f} %"


def validation_curves(runs: Sequence[RunData], ctx: Any) -> str | None:
    colour = plots.colours([r.name for r in runs])
    tasks = list(dict.fromkeys(t for r in runs for t in r.task_names))
    figures = []
    for task in tasks:
        metrics = list(dict.fromkeys(m for r in runs for _, v in r.series("validation")
                                     for m in (v.get(task) or {}) if m != "count"))
        if len(metrics) > 1:  # the training loss is in each run's own curves; here the metrics
            metrics = [m for m in metrics if m != "loss"]
        if not metrics:
            continue
        fig, axes = plots.grid(len(metrics), columns=min(4, len(metrics)), panel=(3.2, 2.5))
        for ax, metric in zip(axes, metrics):
            series = {}
            for r in runs:
                pts = [(e, (v.get(task) or {}).get(metric)) for e, v in r.series("validation")]
                pts = [(e, float(y)) for e, y in pts if isinstance(y, (int, float)) and math.isfinite(y)]
                if pts:
                    series[r.name] = ([e for e, _ in pts], [y for _, y in pts])
            plots.lines(ax, series, colour, title=f"{task}: validation {metric}", xlabel="epoch", legend=False)
        plots.shared_legend(fig, axes)
        figures.append(plots.to_html(fig, f"validation curves of task {task}, every run overlaid"))
    return grid_of(figures) if figures else None


#: the comparison's parts, in order
COMPARISON_SECTIONS: list[ComparisonSection] = [
    ComparisonSection("runs", "Runs", runs_table),
    ComparisonSection("test", "Test metrics side by side", metrics_side_by_side),
    ComparisonSection("curves", "Validation curves overlaid", validation_curves),
]
