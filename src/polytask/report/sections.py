"""The sections of a run's part of the report, in the order they appear.

A section is a function ``(run, context) -> HTML or None`` (None: the run logged nothing the
section draws, and it is left out) listed in :data:`RUN_SECTIONS`; adding a section is writing
such a function and listing it. Sections decide what to draw from the keys the run logged, never
from the model's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from polytask.report import plots
from polytask.report.html import facts, heading, note, plots as grid_of, table, warn
from polytask.report.loading import RunData
from polytask.report.stats import cosine_table, gate_entropy_series, gate_levels, gradient_norms

NOT_PLOTTED = ("count",)


@dataclass
class Context:
    """What sections share while one report is written: where the data is (for sections that
    predict), and a cache (one data set read once for several runs)."""

    data_dir: Path | None = None
    #: the most validation rows the calibration section predicts on
    calibration_rows: int = 200_000
    cache: dict[str, Any] = field(default_factory=dict)


class Section(NamedTuple):
    key: str
    title: str
    render: Callable[[RunData, Context], str | None]


# -- 1. the run at a glance ----------------------------------------------------------------------------
def overview(run: RunData, ctx: Context) -> str:
    data = run.section("data")
    source = data.get("dataset") or data.get("train") or ("several sources" if data.get("sources") else "?")
    if data.get("dataset") and data.get("params"):
        source = f"{source} ({', '.join(f'{k}={v}' for k, v in data['params'].items())})"
    epochs = run.epochs
    monitor = run.section("train").get("monitor", "?")
    best = run.best_epoch
    best_score = next((v for e, v in run.series("monitor") if e == best), None)
    if isinstance(best_score, Mapping):
        best_score = next(iter(best_score.values()), None)
    optimizer = run.section("optimizer")
    seconds = sum(float(r.get("train_seconds") or 0.0) for r in run.history)
    items = [
        ("directory", str(run.path)),
        ("model", run.model_name),
        ("weighting", run.weighting_name),
        ("tasks", ", ".join(f"{n} ({k})" for n, k in run.tasks) or "?"),
        ("parameters", run.parameters),
        ("data", source),
        ("epochs trained", f"{len(epochs)} (of at most {run.section('train').get('epochs', '?')})"),
        ("best epoch", f"{best if best is not None else '—'} by validation {monitor}"
                       + (f" = {best_score:.4f}" if isinstance(best_score, (int, float)) else "")),
        ("optimiser", f"{optimizer.get('name', '?')}, lr {optimizer.get('lr', '?')}, batch size "
                      f"{run.section('train').get('batch_size', '?')}"),
        ("training time", f"{seconds:.1f} s" if seconds else None),
        ("logged every", f"{run.section('train').get('log_every')} steps" if run.section("train").get("log_every") else "never (train.log_every unset)"),
    ]
    out = facts(items)
    if run.load_error:
        out += warn(f"The model could not be loaded ({run.load_error}); sections that need it are left out.")
    if not run.history:
        out += warn("metrics.jsonl holds no epoch record: no curves can be drawn.")
    return out


# -- 2. final metrics ------------------------------------------------------------------------------------
def final_metrics(run: RunData, ctx: Context) -> str:
    splits = [s for s in ("validation", "test") if isinstance(run.metrics.get(s), Mapping)]
    if not splits:
        return note("metrics.json holds no final metrics.")
    tasks = run.task_names + [t for s in splits for t in run.metrics[s] if isinstance(run.metrics[s][t], Mapping)
                              and t not in run.task_names]
    tasks = list(dict.fromkeys(tasks))
    per_task = {t: [m for s in splits for m in (run.metrics[s].get(t) or {}) if m != "count"] for t in tasks}
    metrics = list(dict.fromkeys(m for t in tasks for m in per_task[t]))
    rows = []
    for task in tasks:
        for s in splits:
            values = run.metrics[s].get(task) or {}
            rows.append([task, s, values.get("count"), *[values.get(m) if m in per_task[task] else "" for m in metrics]])
    caption = note((f"The saved checkpoint (epoch {run.best_epoch}) on each split" if run.best_epoch is not None
                    else "The saved checkpoint on each split") + "; rows: the labelled rows of each task.")
    total = [(s, run.metrics[s].get("loss")) for s in splits if _is_number(run.metrics[s].get("loss"))]
    summed = note("Sum of the task losses: " + ", ".join(f"{s} {v:.4f}" for s, v in total) + ".") if total else ""
    return caption + table(["task", "split", "rows", *metrics], rows, numeric_from=2) + summed


# -- 3. curves ---------------------------------------------------------------------------------------------
def curves(run: RunData, ctx: Context) -> str | None:
    if not run.history:
        return None
    colour = plots.colours(run.task_names)
    figures = []
    train_loss = run.series("train_loss")
    validation = run.series("validation")
    if train_loss or validation:
        fig = plots.figure()
        ax = fig.add_subplot()
        series, styles = {}, {}
        for task in run.task_names:
            x = [e for e, v in train_loss if _is_number(v.get(task))]
            series[f"{task} train"] = (x, [float(v[task]) for e, v in train_loss if _is_number(v.get(task))])
            styles[f"{task} train"] = "-"
            xv = [e for e, v in validation if _is_number((v.get(task) or {}).get("loss"))]
            series[f"{task} validation"] = (xv, [float(v[task]["loss"]) for e, v in validation
                                                 if _is_number((v.get(task) or {}).get("loss"))])
            styles[f"{task} validation"] = "--"
        line_colour = {f"{t} {s}": colour[t] for t in run.task_names for s in ("train", "validation")}
        plots.mark_epoch(ax, run.best_epoch)
        plots.lines(ax, series, line_colour, style=styles, title="Loss per task (training solid, validation dashed)",
                    xlabel="epoch", ylabel="loss", log=True)
        figures.append(plots.to_html(fig, "training and validation loss per task over epochs"))
    metrics = [m for _, v in validation for t in run.task_names for m in (v.get(t) or {})
               if m not in NOT_PLOTTED and m != "loss"]
    metrics = list(dict.fromkeys(metrics))
    if metrics:
        fig, axes = plots.grid(len(metrics), columns=min(4, len(metrics)), panel=(3.1, 2.5))
        for ax, metric in zip(axes, metrics):
            series = {}
            for task in run.task_names:
                pts = [(e, float(v[task][metric])) for e, v in validation if _is_number((v.get(task) or {}).get(metric))]
                if pts:
                    series[task] = ([e for e, _ in pts], [y for _, y in pts])
            plots.mark_epoch(ax, run.best_epoch)
            plots.lines(ax, series, colour, title=f"validation {metric}", xlabel="epoch", legend=False)
        plots.shared_legend(fig, axes)
        figures.append(plots.to_html(fig, "validation metrics per task over epochs"))
    lr = [(e, float(v)) for e, v in run.series("lr") if _is_number(v)]
    monitor = [(e, _first(v)) for e, v in run.series("monitor")]
    monitor = [(e, v) for e, v in monitor if v is not None]
    if lr or monitor:
        fig, axes = plots.grid(2 if lr and monitor else 1, columns=2, panel=(3.2, 2.6))
        if monitor:
            ax = axes[0]
            name = next(iter(run.series("monitor")[0][1]), "monitor")
            plots.mark_epoch(ax, run.best_epoch)
            plots.lines(ax, {name: ([e for e, _ in monitor], [v for _, v in monitor])}, {name: "#111827"},
                        title=f"monitor: {name}", xlabel="epoch", legend=False)
            best = [(e, v) for e, v in monitor if e == run.best_epoch]
            if best:
                ax.plot([best[0][0]], [best[0][1]], marker="*", markersize=12, color="#dc2626", linestyle="none",
                        label=f"best (epoch {best[0][0]})", zorder=5)
            ax.legend(loc="best")
        if lr:
            ax = axes[-1]
            plots.lines(ax, {"lr": ([e for e, _ in lr], [v for _, v in lr])}, {"lr": "#2563eb"},
                        title="learning rate", xlabel="epoch", legend=False)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        figures.append(plots.to_html(fig, "monitored validation score and learning rate over epochs"))
    return grid_of(figures) if figures else None


# -- 4. task weights -----------------------------------------------------------------------------------
def task_weights(run: RunData, ctx: Context) -> str | None:
    if not run.history:
        return None
    colour = plots.colours(run.task_names)
    figures, notes = [], []
    epoch_weights = run.series("weights")
    if epoch_weights:
        fig = plots.figure()
        ax = fig.add_subplot()
        series = {t: ([e for e, w in epoch_weights if _is_number(w.get(t))],
                      [float(w[t]) for e, w in epoch_weights if _is_number(w.get(t))]) for t in run.task_names}
        plots.lines(ax, series, colour, title="Mean task weight per epoch", xlabel="epoch", ylabel="weight")
        figures.append(plots.to_html(fig, "mean task weight per epoch"))
    steps = [s for s in run.steps() if isinstance(s.get("weights"), Mapping)]
    if steps:
        fig = plots.figure()
        ax = fig.add_subplot()
        series = {t: ([s["step"] for s in steps if _is_number(s["weights"].get(t))],
                      [float(s["weights"][t]) for s in steps if _is_number(s["weights"].get(t))]) for t in run.task_names}
        _epoch_boundaries(ax, run.steps())
        plots.lines(ax, series, colour, title="Task weights at the logged steps", xlabel="optimiser step", ylabel="weight")
        figures.append(plots.to_html(fig, "task weights at the logged steps"))
    else:
        notes.append(note("No per-step weights were logged (train.log_every unset)."))
    state = _numeric_leaves([(e, v) for e, v in run.series("weighting")])
    if state:
        fig = plots.figure()
        ax = fig.add_subplot()
        plots.lines(ax, state, title="The weighting's own state per epoch", xlabel="epoch")
        figures.append(plots.to_html(fig, "the weighting method's state per epoch"))
    if not figures:
        return None
    return "".join(notes) + grid_of(figures)


def _epoch_boundaries(ax: Any, steps: list[dict[str, Any]]) -> None:
    """Faint vertical lines where each epoch's logged steps begin (after the first)."""
    seen: set[Any] = set()
    for s in steps:
        if s.get("epoch") not in seen:
            if seen:
                ax.axvline(s["step"], color="#d1d5db", linewidth=0.8, zorder=0)
            seen.add(s.get("epoch"))


# -- 5. task gradients ---------------------------------------------------------------------------------
def gradients(run: RunData, ctx: Context) -> str | None:
    if not run.history:
        return None
    steps = run.steps()
    cos = cosine_table(steps)
    if cos is None:
        why = ("train.log_every is unset" if not run.section("train").get("log_every") else
               "the model has no parameters shared by two tasks, or fewer than two tasks were trained")
        return note(f"No task-gradient cosines were logged ({why}).")
    figures = []
    labels = [f"{a} × {b}" for a, b in cos.pairs]
    fig = plots.figure(12.8, 1.3 + 0.32 * len(labels))
    ax = fig.add_subplot()
    plots.heatmap(ax, cos.values, labels, [], cmap=plots.DIVERGING, vmin=-1, vmax=1, annotate=False,
                  title="Cosine between task gradients on the shared parameters (red: aligned, blue: conflicting)",
                  xlabel="optimiser step")
    ticks = np.unique(np.linspace(0, len(cos.steps) - 1, min(len(cos.steps), 12)).round().astype(int))
    ax.set_xticks(ticks, [str(cos.steps[i]) for i in ticks])
    figures.append(plots.to_html(fig, "heat map of pairwise task-gradient cosines over the logged steps", wide=True))
    shares = cos.conflict_shares()
    rows = []
    for p, pair in enumerate(cos.pairs):
        share, n = shares[pair]
        row = cos.values[p]
        seen = row[~np.isnan(row)]
        rows.append([f"{pair[0]} × {pair[1]}", n, share, float(seen.mean()) if seen.size else None,
                     float(np.median(seen)) if seen.size else None])
    fig = plots.figure(6.4, 1.2 + 0.34 * len(labels))
    ax = fig.add_subplot()
    values = [shares[p][0] for p in cos.pairs]
    ax.barh(range(len(labels)), values, color=["#2563eb" if v >= 0.5 else "#93c5fd" for v in values])
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.axvline(0.5, color="#6b7280", linestyle=":", linewidth=1)
    for i, v in enumerate(values):
        if v == v:
            ax.text(min(v + 0.01, 0.9), i, f"{v:.0%}", va="center", fontsize=8)
    ax.set_title("Share of logged steps with conflicting gradients (cosine < 0)")
    ax.set_xlabel("share of logged steps")
    ax.grid(axis="y", visible=False)
    figures.append(plots.to_html(fig, "share of logged steps with conflicting gradients per task pair"))
    norms = gradient_norms(steps)
    norm_note = ""
    if norms is not None:
        tasks, xs, values_ = norms
        fig = plots.figure()
        ax = fig.add_subplot()
        series = {t: ([x for x, v in zip(xs, values_[i]) if v == v], [v for v in values_[i] if v == v])
                  for i, t in enumerate(tasks)}
        _epoch_boundaries(ax, steps)
        plots.lines(ax, series, plots.colours(run.task_names + [t for t in tasks if t not in run.task_names]),
                    title="Gradient norm per task on the shared parameters", xlabel="optimiser step",
                    ylabel="L2 norm", log=True)
        figures.append(plots.to_html(fig, "per-task gradient norm over the logged steps"))
    else:
        norm_note = note("Per-task gradient norms were not logged in this run (runs logged before they were): "
                         "that plot is left out.")
    summary = note(f"{len(cos.steps)} logged steps (every {run.section('train').get('log_every', '?')} optimiser steps); "
                   "a pair counts only at the steps where both tasks had labelled rows.")
    header = ["task pair", "logged steps", "share conflicting (cos < 0)", "mean cosine", "median cosine"]
    return summary + norm_note + grid_of(figures) + table(header, rows)


# -- 6. gates ------------------------------------------------------------------------------------------------
def gates(run: RunData, ctx: Context) -> str | None:
    records = [(e, d) for e, d in run.series("diagnostics") if isinstance(d, Mapping) and isinstance(d.get("gates"), Mapping)]
    if not records:
        return None
    model = run.section("model")
    last_epoch, last = records[-1]
    levels = gate_levels(last["gates"], model)
    if not levels:
        return None
    figures, parts = [], []
    # final task x expert heat maps, one panel per level
    cols = min(len(levels), 2)
    width = max(6.4, min(12.8, 1.6 + 0.55 * max(len(lv.experts) for lv in levels) * cols))
    fig, axes = plots.grid(len(levels), columns=cols, panel=(width / cols, 1.4 + 0.38 * max(len(lv.gates) for lv in levels)),
                           width=width)
    for ax, lv in zip(axes, levels):
        plots.heatmap(ax, lv.matrix, lv.gates, lv.experts, vmin=0.0, vmax=float(np.nanmax(lv.matrix)) if np.isfinite(lv.matrix).any() else 1.0,
                      title=f"{_level_title(lv.name)}mean gate weight, epoch {last_epoch}", xlabel="expert", ylabel="gate")
    figures.append(plots.to_html(fig, "final gate weights per gate and expert"))
    # gate weights over epochs: one panel per gate (per level)
    history = [(e, gate_levels(d["gates"], model)) for e, d in records]
    panels = [(lv.name, g) for lv in levels for g in lv.gates]
    if len(history) > 1:
        fig, axes = plots.grid(len(panels), columns=min(3, len(panels)), panel=(3.4, 2.5))
        expert_colour = {lv.name: plots.colours(lv.experts) for lv in levels}
        for ax, (level_name, gate) in zip(axes, panels):
            series = _gate_series(history, level_name, gate)
            plots.lines(ax, series, expert_colour[level_name], title=f"{_level_title(level_name)}gate {gate}",
                        xlabel="epoch", ylabel="weight", legend=False)
        plots.shared_legend(fig, axes)
        figures.append(plots.to_html(fig, "gate weights of every expert over epochs"))
    # expert utilisation and dead experts
    fig, axes = plots.grid(len(levels), columns=min(2, len(levels)), panel=(max(3.4, 0.5 * max(len(lv.experts) for lv in levels) + 1.5), 2.6))
    dead_rows = []
    for ax, lv in zip(axes, levels):
        util = lv.utilisation()
        threshold = lv.threshold()
        x = np.arange(len(lv.experts))
        ax.bar(x, np.nan_to_num(util), color=["#dc2626" if u < threshold else "#2563eb" for u in np.nan_to_num(util)])
        ax.axhline(threshold, color="#dc2626", linestyle=":", linewidth=1, label=f"dead below 1/(10·{lv.width})")
        ax.axhline(1.0 / lv.width, color="#6b7280", linestyle="--", linewidth=1, label=f"uniform 1/{lv.width}")
        ax.set_xticks(x, lv.experts, rotation=40 if len(lv.experts) > 4 else 0, ha="right" if len(lv.experts) > 4 else "center")
        ax.set_title(f"{_level_title(lv.name)}expert utilisation")
        ax.set_ylabel("mean gate weight")
        ax.grid(axis="x", visible=False)
        dead_rows += [[lv.name, name, u, threshold] for name, u in lv.dead_experts()]
    plots.shared_legend(fig, axes)
    figures.append(plots.to_html(fig, "expert utilisation: mean gate weight of each expert over the gates that can select it"))
    # gate entropy over epochs
    entropy, logged = gate_entropy_series(records)
    if entropy:
        names = list(entropy)
        fig, axes = plots.grid(len(names), columns=min(2, len(names)), panel=(3.4, 2.6))
        widths = {lv.name: lv.width for lv in levels}
        for ax, level_name in zip(axes, names):
            series = {g: ([e for e, _ in pts], [h for _, h in pts]) for g, pts in entropy[level_name].items()}
            top = max([h for _, ys in series.values() for h in ys if h == h] + [0.0])
            if level_name in widths:
                top = max(top, math.log(widths[level_name]))
                ax.axhline(math.log(widths[level_name]), color="#6b7280", linestyle="--", linewidth=1,
                           label=f"uniform, log {widths[level_name]}")
            plots.lines(ax, series, plots.colours(list(series)), title=f"{_level_title(level_name)}gate entropy",
                        xlabel="epoch", ylabel="nats", legend=False)
            ax.set_ylim(0, 1.1 * top if top > 0 else 1.0)
        plots.shared_legend(fig, axes)
        figures.append(plots.to_html(fig, "gate entropy over epochs"))
    parts.append(note(
        "Gate weights are the mean over every validation row of each epoch (in runs logged before "
        "2026-11-30, over the last validation batch). An expert is dead when its "
        "utilisation (mean weight over the gates that can select it) is below 1/(10 E), E the number of experts "
        "a gate mixes; grey cells: experts a gate cannot select."))
    if entropy and not logged:
        parts.append(note("gate_entropy was not logged in this run: the entropy of each epoch's mean gate is shown "
                          "instead (an upper bound of the mean per-row entropy; a gate whose every row picks one "
                          "expert can still have a high mean-gate entropy)."))
    elif entropy:
        parts.append(note("Gate entropy: the mean over rows of each row's gate entropy (nats), as logged."))
    body = "".join(parts) + grid_of(figures)
    if dead_rows:
        header = ["level", "expert", "utilisation", "threshold"]
        if all(not row[0] for row in dead_rows):  # one level of gates: no level column
            header, dead_rows = header[1:], [row[1:] for row in dead_rows]
        body += heading(f"Dead experts at epoch {last_epoch}") + table(header, dead_rows, numeric_from=len(header) - 2)
    else:
        body += note(f"No dead expert at epoch {last_epoch}: every expert's utilisation is at least 1/(10 E).")
    return body


def _level_title(name: str) -> str:
    return f"{name}: " if name else ""


def _gate_series(history: list[tuple[int, list[Any]]], level_name: str, gate: str) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for epoch, levels in history:
        for lv in levels:
            if lv.name != level_name or gate not in lv.gates:
                continue
            row = lv.matrix[lv.gates.index(gate)]
            for expert, value in zip(lv.experts, row):
                if value == value:
                    xs, ys = series.setdefault(expert, ([], []))
                    xs.append(epoch)
                    ys.append(float(value))
    return series


# -- 9. regularisation -----------------------------------------------------------------------------------
def regularization(run: RunData, ctx: Context) -> str | None:
    series = _numeric_leaves(run.series("regularization"))
    if not series:
        return None
    fig = plots.figure()
    ax = fig.add_subplot()
    plots.mark_epoch(ax, run.best_epoch)
    plots.lines(ax, series, title="Regularisation terms (mean per training batch)", xlabel="epoch", ylabel="value", log=True)
    last = {name: ys[-1] for name, (_, ys) in series.items()}
    return grid_of([plots.to_html(fig, "regularisation terms over epochs")]) + table(
        ["term", "last epoch"], [[k, v] for k, v in last.items()])


# -- helpers ---------------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _first(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = next(iter(value.values()), None)
    return float(value) if _is_number(value) else None


def _numeric_leaves(records: list[tuple[int, Any]], limit: int = 12) -> dict[str, tuple[list[int], list[float]]]:
    """``{path: (epochs, values)}`` of the numeric leaves of nested dicts logged per epoch (at
    most ``limit`` series)."""
    out: dict[str, tuple[list[int], list[float]]] = {}

    def walk(epoch: int, value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(epoch, v, f"{path} {k}".strip())
        elif _is_number(value) and (path in out or len(out) < limit):
            xs, ys = out.setdefault(path or "value", ([], []))
            xs.append(epoch)
            ys.append(float(value))

    for epoch, value in records:
        walk(epoch, value, "")
    return out


def _structure(run: RunData, ctx: Context) -> str | None:
    from polytask.report.structure import structure

    return structure(run, ctx)


def _calibration(run: RunData, ctx: Context) -> str | None:
    from polytask.report.calibration import calibration

    return calibration(run, ctx)


#: a run's sections, in order: ``(anchor key, title, function)``
RUN_SECTIONS: list[Section] = [
    Section("overview", "Run", overview),
    Section("metrics", "Final metrics", final_metrics),
    Section("curves", "Training curves", curves),
    Section("weights", "Task weights", task_weights),
    Section("gradients", "Task gradients", gradients),
    Section("gates", "Gates and experts", gates),
    Section("structure", "Learned structure", _structure),
    Section("calibration", "Calibration of the binary tasks", _calibration),
    Section("regularization", "Regularisation terms", regularization),
]
