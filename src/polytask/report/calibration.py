"""Calibration of every binary task on the run's validation split: a reliability diagram (mean
predicted probability against the observed rate of positives in 10 equal-width bins) and the
expected calibration error. The run's data is read again (``load_splits`` on the run's own
config); rows without a label, or outside a task's sample space (its ``where``), are left out.
When the model or the data cannot be read, the section says so in one line: it never fails the
report."""

from __future__ import annotations

import json
from typing import Any


from polytask.report import plots
from polytask.report.html import note, plots as grid_of, table
from polytask.report.loading import RunData
from polytask.report.stats import Reliability, reliability

BINS = 10


def calibration(run: RunData, ctx: Any) -> str | None:
    binary = [name for name, kind in run.tasks if kind == "binary"]
    if not binary:
        return None
    if run.run is None:
        return note("Calibration is left out: the model could not be loaded.")
    try:
        table_, source, capped = _validation_table(run, ctx)
    except Exception as exc:  # noqa: BLE001 - whatever stops the data from being read, the report goes on
        return note(f"Calibration is left out: the run's validation data could not be read ({_one_line(exc)}).")
    if table_ is None:
        return note("Calibration is left out: the run has no validation split.")
    try:
        results = _reliabilities(run, table_, source, binary)
    except Exception as exc:  # noqa: BLE001
        return note(f"Calibration is left out: predicting the validation split failed ({_one_line(exc)}).")
    run.cache["calibration"] = results
    return _render(results, capped, source)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _validation_table(run: RunData, ctx: Any) -> tuple[Any, str, int | None]:
    """The run's validation table (read once per data config for the whole report), its source,
    and the number of rows it was cut to (None when whole)."""
    from polytask.data.sources import load_splits

    assert run.run is not None
    data_config = run.run.config.data
    key = "splits:" + json.dumps(data_config.model_dump(mode="json"), sort_keys=True, default=str)
    cache = ctx.cache
    if key not in cache:
        try:
            cache[key] = load_splits(data_config, ctx.data_dir)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            cache[key] = exc
    splits = cache[key]
    if isinstance(splits, Exception):
        raise splits
    table = splits.validation
    if table is None:
        return None, "", None
    capped = None
    if table.num_rows > ctx.calibration_rows:
        capped = ctx.calibration_rows
        table = table.slice(0, capped)
    return table, _shown_source(splits.sources.get("validation", "validation"), ctx.data_dir), capped


def _shown_source(source: str, data_dir: Any) -> str:
    """Where the validation rows came from, with the data directory written ``<data dir>`` (the
    report may be read on another machine)."""
    from polytask.data.paths import resolve_data_dir

    try:
        root = str(resolve_data_dir(data_dir).resolve())
    except Exception:  # noqa: BLE001 - no data directory: nothing to shorten
        return source
    return source.replace(root + "/", "<data dir>/")


def _reliabilities(run: RunData, table: Any, source: str, tasks: list[str]) -> dict[str, Reliability]:
    """Predict the table and bin each binary task's predictions over its labelled rows."""
    from polytask.train.trainer import predict_raw

    assert run.run is not None
    model = run.run
    encoded = model.preprocessor.transform(table, source)
    raw = predict_raw(model.model, encoded, [t.name for t in model.tasks], model.config.train.eval_batch_size, model.device)
    by_name = {t.name: t for t in model.tasks}
    out = {}
    for name in tasks:
        prob = by_name[name].predict(raw[name]).numpy().reshape(-1)
        label = encoded.labels[name].numpy().reshape(-1)
        mask = encoded.masks[name].numpy().reshape(-1).astype(bool)
        out[name] = reliability(prob[mask], label[mask], BINS)
    return out


def _render(results: dict[str, Reliability], capped: int | None, source: str) -> str:
    names = list(results)
    fig, axes = plots.grid(len(names), columns=min(3, len(names)), panel=(3.3, 3.2))
    for ax, name in zip(axes, names):
        r = results[name]
        centres = (r.edges[:-1] + r.edges[1:]) / 2
        share = r.counts / max(r.rows, 1)
        ax.bar(centres, share, width=(r.edges[1] - r.edges[0]) * 0.92, color="#dbeafe", edgecolor="#bfdbfe",
               label="share of rows", zorder=1)
        ax.plot([0, 1], [0, 1], linestyle="--", color="#9ca3af", linewidth=1, label="perfectly calibrated", zorder=2)
        filled = r.counts > 0
        ax.plot(r.predicted[filled], r.observed[filled], marker="o", markersize=4, color="#2563eb",
                label="observed rate", zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: ECE {r.ece:.3f}")
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed rate of positives")
        ax.grid(axis="x", visible=False)
    plots.shared_legend(fig, axes, where="bottom")
    rows = [[name, r.rows, r.base_rate, r.mean_prediction, r.ece] for name, r in results.items()]
    text = note(f"Validation split ({source}{f', first {capped:,} rows' if capped else ''}): {BINS} equal-width bins of "
                "the predicted probability; rows without a label or outside a task's sample space are left out. "
                "ECE: the mean |observed - predicted| over the bins, weighted by their rows.")
    return (text + grid_of([plots.to_html(fig, "reliability diagrams of the binary tasks")])
            + table(["task", "rows", "observed rate", "mean prediction", "ECE"], rows))
