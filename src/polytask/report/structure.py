"""The learned structure a model reports in ``diagnostics`` (other than its gates): one view per
logged key, in :data:`VIEWS`; a key no view knows is shown as it was logged (a heat map when it is
a matrix, else its JSON). What is drawn follows the keys, not the model's name."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from polytask.report import plots
from polytask.report.html import esc, heading, note, plots as grid_of, table
from polytask.report.loading import RunData

#: diagnostics keys drawn by the gates section
GATE_KEYS = ("gates", "gate_entropy")

View = Callable[[RunData, list[tuple[int, Any]]], str | None]


def structure(run: RunData, ctx: Any) -> str | None:
    keys = [k for k in run.diagnostic_keys() if k not in GATE_KEYS]
    parts = []
    for key in keys:
        series = run.diagnostics(key)
        if not series:
            continue
        view = VIEWS.get(key, generic)
        html = view(run, series) if view is not generic else generic(run, series, key)
        if html:
            parts.append(html)
    return "".join(parts) if parts else None


# -- helpers ---------------------------------------------------------------------------------------------------
def is_matrix(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and all(isinstance(r, list) and r for r in value)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in value for v in r))


def _array(value: Any) -> np.ndarray:
    width = max(len(r) for r in value)
    out = np.full((len(value), width), np.nan)
    for i, row in enumerate(value):
        out[i, :len(row)] = [float(v) for v in row]
    return out


def _labels(run: RunData, size: int) -> list[str]:
    """Task names when there is one row per task, else ``task:k`` for ``k`` rows per task, else indices."""
    names = run.task_names
    if size == len(names):
        return list(names)
    if names and size % len(names) == 0:
        per = size // len(names)
        return [f"{t}:{k}" for t in names for k in range(per)]
    return [str(i) for i in range(size)]


def _entry_series(series: list[tuple[int, np.ndarray]], labels: Sequence[str], *, symmetric: bool = False) -> dict[str, tuple[list[int], list[float]]]:
    """Lines over epochs of a small matrix's entries (each off-diagonal entry, and the diagonal
    when it is not fixed), or of its diagonal and off-diagonal means when it is large."""
    n = series[-1][1].shape[0]
    out: dict[str, tuple[list[int], list[float]]] = {}

    def add(name: str, epoch: int, value: float) -> None:
        xs, ys = out.setdefault(name, ([], []))
        xs.append(epoch)
        ys.append(value)

    for epoch, m in series:
        if m.shape != (n, n):
            continue
        if n <= 3:
            for i in range(n):
                for j in range(n):
                    if symmetric and j <= i:
                        continue
                    add(f"{labels[i]} ← {labels[j]}" if not symmetric else f"{labels[i]} × {labels[j]}", epoch, float(m[i, j]))
        else:
            off = ~np.eye(n, dtype=bool)
            if not symmetric:
                add("diagonal (mean)", epoch, float(np.nanmean(np.diag(m))))
            add("off-diagonal (mean)", epoch, float(np.nanmean(m[off])))
            add("off-diagonal (mean |x|)", epoch, float(np.nanmean(np.abs(m[off]))))
    return out


def _matrix_figures(run: RunData, title: str, named: list[tuple[str, list[tuple[int, np.ndarray]]]], *,
                    signed: bool = True, fixed_limit: float | None = None, symmetric: bool = False,
                    row_label: str = "", column_label: str = "") -> list[str]:
    """Heat maps of the last epoch's matrices (one panel each) and their entries over epochs."""
    figures = []
    last = [(name, s[-1][1], s[-1][0]) for name, s in named if s]
    if not last:
        return figures
    size = max(m.shape[0] for _, m, _ in last)
    side = max(2.8, min(6.0, 0.55 * size + 1.8))
    fig, axes = plots.grid(len(last), columns=min(3, len(last)), panel=(side + 0.6, side))
    for ax, (name, m, epoch) in zip(axes, last):
        if fixed_limit is not None or (signed and np.nanmin(m) < 0):  # signed values: a diverging map centred at 0
            limit = fixed_limit if fixed_limit is not None else plots.symmetric_limit(m)
            cmap, lo, hi = plots.DIVERGING, -limit, limit
        else:  # all of one sign: the sequential map over their range (the cells say the values)
            cmap, lo, hi = plots.SEQUENTIAL, float(np.nanmin(m)), float(np.nanmax(m))
        plots.heatmap(ax, m, _labels(run, m.shape[0]), _labels(run, m.shape[1]), cmap=cmap, vmin=lo, vmax=hi,
                      title=f"{name}, epoch {epoch}" if name else f"epoch {epoch}", ylabel=row_label, xlabel=column_label)
    figures.append(plots.to_html(fig, f"{title}: the last epoch's values"))
    moving = [(name, s) for name, s in named if len(s) > 1]
    if moving:
        fig, axes = plots.grid(len(moving), columns=min(3, len(moving)), panel=(3.4, 2.6))
        for ax, (name, s) in zip(axes, moving):
            lines = _entry_series(s, _labels(run, s[-1][1].shape[0]), symmetric=symmetric)
            plots.lines(ax, lines, title=f"{name} over epochs" if name else "over epochs", xlabel="epoch",
                        legend=False)
        plots.shared_legend(fig, axes)
        figures.append(plots.to_html(fig, f"{title}: entries over epochs"))
    return figures


# -- views -------------------------------------------------------------------------------------------------------
def cross_stitch(run: RunData, series: list[tuple[int, Any]]) -> str | None:
    """``{unit: [[T x T]]}``: ``alpha[t, s]``, how much task ``t``'s next layer takes from task
    ``s``'s column."""
    units: dict[str, list[tuple[int, np.ndarray]]] = {}
    for epoch, value in series:
        if isinstance(value, Mapping):
            for unit, m in value.items():
                if is_matrix(m):
                    units.setdefault(str(unit), []).append((epoch, _array(m)))
    if not units:
        return None
    ordered = sorted(units, key=lambda u: (0, int(u)) if u.lstrip("-").isdigit() else (1, u))
    figures = _matrix_figures(run, "cross-stitch units", [(f"unit {u}", units[u]) for u in ordered],
                              row_label="into task", column_label="from task")
    return (heading("Cross-stitch mixing") +
            note("alpha[t, s]: the weight task t's next layer gives to task s's activations (rows: into, columns: from); "
                 "an identity matrix means no sharing.") + grid_of(figures))


def task_correlation(run: RunData, series: list[tuple[int, Any]]) -> str | None:
    """``[[T x T]]``: the task correlation a model learns (DRN's tensor-normal prior)."""
    mats = [(e, _array(v)) for e, v in series if is_matrix(v)]
    if not mats:
        return None
    figures = _matrix_figures(run, "task correlation", [("task correlation", mats)], fixed_limit=1.0, symmetric=True)
    return heading("Task correlation") + note("The correlation between tasks the model's prior has learned.") + grid_of(figures)


def sluice_alpha(run: RunData, series: list[tuple[int, Any]]) -> str | None:
    """``[layer][T m x T m]`` (or one matrix): subspace mixing; rows and columns ``task:subspace``."""
    layers: dict[str, list[tuple[int, np.ndarray]]] = {}
    for epoch, value in series:
        mats = [value] if is_matrix(value) else [m for m in value if is_matrix(m)] if isinstance(value, list) else []
        for i, m in enumerate(mats):
            layers.setdefault(f"layer {i}" if len(mats) > 1 else "alpha", []).append((epoch, _array(m)))
    if not layers:
        return None
    figures = _matrix_figures(run, "alpha subspace mixing", list(layers.items()), signed=True,
                              row_label="into task:subspace", column_label="from task:subspace")
    own = _own_share(run, layers)
    if own:
        fig = plots.figure()
        ax = fig.add_subplot()
        plots.lines(ax, own, title="Weight each task keeps on its own subspaces", xlabel="epoch", ylabel="share")
        figures.append(plots.to_html(fig, "share of alpha weight on the task's own subspaces over epochs"))
    return (heading("Subspace mixing (alpha)") +
            note("alpha[i, j]: the weight subspace i of the next layer gives to subspace j (rows and columns task:subspace).")
            + grid_of(figures))


def _own_share(run: RunData, layers: dict[str, list[tuple[int, np.ndarray]]]) -> dict[str, tuple[list[int], list[float]]]:
    tasks = len(run.task_names)
    out: dict[str, tuple[list[int], list[float]]] = {}
    for name, series in layers.items():
        for epoch, m in series:
            n = m.shape[0]
            if not tasks or n % tasks or m.shape != (n, n):
                return {}
            per = n // tasks
            owner = np.arange(n) // per
            own = np.abs(m)[owner[:, None] == owner[None, :]].sum()
            total = np.abs(m).sum()
            xs, ys = out.setdefault(name, ([], []))
            xs.append(epoch)
            ys.append(float(own / total) if total else float("nan"))
    return out


def layer_weights(run: RunData, series: list[tuple[int, Any]]) -> str | None:
    """``{task: [weight per layer]}``: how much each task's head reads from each layer (sluice beta)."""
    epoch, value = series[-1]
    if not isinstance(value, Mapping):
        return None
    rows = {str(t): w for t, w in value.items() if isinstance(w, list) and w}
    if not rows:
        return None
    matrix = _array(list(rows.values()))
    fig = plots.figure(max(3.6, 1.4 + 0.8 * matrix.shape[1]), 1.2 + 0.4 * len(rows))
    ax = fig.add_subplot()
    plots.heatmap(ax, matrix, list(rows), [f"layer {i}" for i in range(matrix.shape[1])], cmap=plots.SEQUENTIAL,
                  title=f"layer weights per task, epoch {epoch}", ylabel="task")
    return (heading("Layer weights (beta)") + note("beta[t, l]: the weight task t's head gives to layer l's output.")
            + grid_of([plots.to_html(fig, "layer weights per task")]))


def branches(run: RunData, series: list[tuple[int, Any]]) -> str | None:
    """``[layer][branch][task names]`` (bottom layer first): the branch tree of a model that widens
    while it trains; ``record["structure"]`` marks the epochs after which it widened."""
    trees = [(e, v) for e, v in series if _is_tree(v)]
    if not trees:
        return None
    epoch, tree = trees[-1]
    widened = {e for e, s in [(r.get("epoch"), r.get("structure")) for r in run.history] if isinstance(s, Mapping)}
    depth = max(len(t) for _, t in trees)
    rows = []
    for e, t in trees:
        rows.append([e, *[" ".join("{" + ", ".join(map(str, b)) + "}" for b in layer) for layer in t],
                     *([""] * (depth - len(t))), "yes" if e in widened else ""])
    header = ["epoch", *[f"layer {i + 1}" for i in range(depth)], "widened after it"]
    fig = _tree_figure(tree, run.task_names, f"branch tree at epoch {epoch}")
    last = run.history[-1].get("structure") if run.history else None
    after = ""
    if isinstance(last, Mapping) and _is_index_tree(last.get("branches")):
        names = run.task_names
        final = [[[names[i] if isinstance(i, int) and 0 <= i < len(names) else str(i) for i in b] for b in layer]
                 for layer in last["branches"]]
        after = note("After the last epoch the model widened again: " + "; ".join(
            f"layer {i + 1}: " + " ".join("{" + ", ".join(b) + "}" for b in layer) for i, layer in enumerate(final)))
    return (heading("Branch tree") +
            note("Each layer's branches (bottom layer first), each a set of tasks sharing that layer's weights, as "
                 "trained in each epoch.") + grid_of([fig]) + table(header, rows, numeric_from=99) + after)


def _is_tree(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and all(isinstance(layer, list) for layer in value)
            and all(isinstance(b, list) for layer in value for b in layer))


def _is_index_tree(value: Any) -> bool:
    return _is_tree(value) and all(isinstance(i, int) for layer in value for b in layer for i in b)


def _tree_figure(tree: list[list[list[Any]]], tasks: list[str], title: str) -> str:
    """The branch tree drawn bottom-up: the input, each layer's branches as boxes joined to the
    branch below that holds their tasks, the task heads on top."""
    names = [str(t) for layer in tree for b in layer for t in b]
    tasks = [t for t in tasks if t in names] + [t for t in dict.fromkeys(names) if t not in tasks]
    # order tasks so each branch is contiguous: by the branch they are in, bottom layer first
    def key(task: str) -> tuple[int, ...]:
        return tuple(next((i for i, b in enumerate(layer) if task in map(str, b)), 0) for layer in tree)

    tasks = sorted(tasks, key=key)
    x_of = {t: i for i, t in enumerate(tasks)}
    levels = len(tree) + 2
    fig = plots.figure(max(4.0, 1.3 * len(tasks) + 1.0), 0.75 * levels + 0.6)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-0.8, len(tasks) - 0.2)
    ax.set_ylim(-0.6, levels - 0.4)
    box = {"boxstyle": "round,pad=0.3", "facecolor": "#eff6ff", "edgecolor": "#2563eb", "linewidth": 1}
    mid = (len(tasks) - 1) / 2
    positions: list[list[tuple[float, list[str]]]] = [[(mid, tasks)]]
    for layer in tree:
        positions.append([(float(np.mean([x_of[str(t)] for t in b])) if b else mid, [str(t) for t in b]) for b in layer])
    positions.append([(float(x_of[t]), [t]) for t in tasks])
    for level in range(1, len(positions)):
        for x, members in positions[level]:
            below = next(((bx, bm) for bx, bm in positions[level - 1] if set(members) <= set(bm)), None)
            if below is not None:
                ax.plot([below[0], x], [level - 1, level], color="#9ca3af", linewidth=1, zorder=1)
    for level, row in enumerate(positions):
        for x, members in row:
            if level == 0:
                ax.text(x, level, "input", ha="center", va="center", fontsize=8,
                        bbox={**box, "facecolor": "#f3f4f6", "edgecolor": "#6b7280"}, zorder=2)
            elif level == len(positions) - 1:
                ax.text(x, level, f"{members[0]} head", ha="center", va="center", fontsize=8,
                        bbox={**box, "facecolor": "#ecfdf5", "edgecolor": "#059669"}, zorder=2)
            else:
                ax.text(x, level, ", ".join(members), ha="center", va="center", fontsize=8, bbox=box, zorder=2)
    for level in range(1, len(positions) - 1):
        ax.text(-0.75, level, f"layer {level}", ha="left", va="center", fontsize=8, color="#6b7280")
    ax.set_title(title)
    return plots.to_html(fig, "the branch tree of the shared layers")


def attention(run: RunData, series: list[tuple[int, Any]]) -> str | None:
    """Attention statistics: ``{task: {name: value}}`` or ``{name: value}``."""
    epoch, value = series[-1]
    if not isinstance(value, Mapping):
        return None
    out = heading(f"Attention (epoch {epoch})")
    if all(isinstance(v, Mapping) for v in value.values()):
        columns = list(dict.fromkeys(k for v in value.values() for k in v))
        out += table(["", *columns], [[name, *[v.get(c) for c in columns]] for name, v in value.items()])
    else:
        out += table(["statistic", "value"], [[k, v] for k, v in value.items()])
    from polytask.report.sections import _numeric_leaves

    lines = _numeric_leaves(series)
    if len(series) > 1 and lines:
        fig = plots.figure()
        ax = fig.add_subplot()
        plots.lines(ax, lines, title="attention over epochs", xlabel="epoch")
        out += grid_of([plots.to_html(fig, "attention statistics over epochs")])
    return out


def generic(run: RunData, series: list[tuple[int, Any]], key: str = "") -> str | None:
    """A key no view knows: a heat map when it is a matrix, else its last value as JSON."""
    epoch, value = series[-1]
    if is_matrix(value):
        figures = _matrix_figures(run, key, [(key, [(e, _array(v)) for e, v in series if is_matrix(v)])])
        return heading(key) + grid_of(figures)
    text = json.dumps(value, indent=1, default=str)
    if len(text) > 3000:
        text = text[:3000] + "\n…"
    return heading(f"{key} (epoch {epoch}, as logged)") + f"<pre>{esc(text)}</pre>"


#: diagnostics key -> view
VIEWS: dict[str, Callable[..., str | None]] = {
    "cross_stitch": cross_stitch,
    "task_correlation": task_correlation,
    "alpha": sluice_alpha,
    "beta": layer_weights,
    "branches": branches,
    "attention": attention,
}
