"""``polytask`` command line: train, evaluate, predict, list, demo.

Errors a user can fix (bad config key, missing column, unknown model) are printed as one line
naming the file, column or key, with exit code 2 and no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="polytask",
    help="Multi-task learning on PyTorch: train, evaluate, predict, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Folder of datasets (default: $POLYTASK_DATA_DIR, else ../shared/data)."),
]


def _console():
    from rich.console import Console

    return Console()


def _fail(exc: Exception) -> None:
    # str(KeyError("x")) is "'x'" (the repr): print the message itself
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    set_: Annotated[list[str], typer.Option("--set", help="Override a config key: --set model.num_experts=4.")] = [],  # noqa: B006
    data_dir: DataDir = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress bar.")] = None,
) -> None:
    """Train a model from a config; write the run directory (config, encoders, best checkpoint, metrics)."""
    from polytask.api import train_run
    from polytask.config import load_config
    from polytask.errors import PolytaskError

    overrides = list(set_) + ([f"train.progress={str(progress).lower()}"] if progress is not None else [])
    try:
        cfg = load_config(config, overrides)
        run = train_run(cfg, data_dir=data_dir, out=out, overwrite=overwrite)
    except (PolytaskError, KeyError, FileNotFoundError) as exc:
        _fail(exc)
        return
    if run.directory is not None:  # under torchrun, only rank 0 wrote the run (and reports it)
        _print_metrics(run.metrics, title=f"{cfg.model.name} -> {out}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `polytask train`.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Labelled CSV/Parquet to evaluate on (default: the run's saved metrics are recomputed on its validation and test splits).")] = None,
    data_dir: DataDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Evaluate a trained run: on a labelled file, or again on the run's own validation/test splits."""
    from polytask.api import load_run
    from polytask.data.sources import load_splits
    from polytask.errors import PolytaskError

    try:
        run = load_run(run_dir)
        if data is not None:
            metrics = {str(data): run.evaluate(data, source=str(data))}
        else:
            splits = load_splits(run.config.data, data_dir)
            metrics = {}
            for name in ("validation", "test"):
                table = getattr(splits, name)
                if table is not None:
                    metrics[name] = run.evaluate(table, source=splits.sources.get(name, name))
    except (PolytaskError, KeyError, FileNotFoundError) as exc:
        _fail(exc)
        return
    if json_out:
        typer.echo(json.dumps(metrics, indent=1, default=str))
    else:
        _print_metrics(metrics, title=str(run_dir))


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `polytask train`.")],
    input: Annotated[Path, typer.Argument(help="CSV or Parquet file with the feature columns.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write predictions (.parquet or .csv).")],
    keep: Annotated[list[str], typer.Option("--keep", help="Input columns to copy into the output (e.g. an id).")] = [],  # noqa: B006
) -> None:
    """Predict every task: one named column per task (probabilities for binary tasks)."""
    from polytask.api import load_run
    from polytask.data.io import write_table
    from polytask.errors import PolytaskError

    try:
        run = load_run(run_dir)
        table = run.predict_table(input, source=str(input), keep=list(keep))
        write_table(table, output)
    except (PolytaskError, KeyError, FileNotFoundError) as exc:
        _fail(exc)
        return
    typer.echo(f"wrote {table.num_rows} rows x {table.num_columns} columns ({', '.join(table.column_names)}) to {output}")


@app.command("list")
def list_() -> None:
    """List registered models, weightings, datasets, input encoders, column families and task kinds."""
    from rich.table import Table

    from polytask.registry import COLUMNS, DATASETS, ENCODERS, MODELS, TASK_KINDS, WEIGHTINGS

    console = _console()
    registries = (("models", MODELS), ("weightings", WEIGHTINGS), ("datasets", DATASETS),
                  ("encoders (model.encoder)", ENCODERS), ("column families (model.columns)", COLUMNS))
    for title, reg in registries:
        table = Table(title=title, title_justify="left", caption=None if reg.names() else "(none registered)")
        table.add_column("name", style="bold")
        table.add_column("description")
        for name in reg.names():
            table.add_row(name, reg.describe(name))
        console.print(table)
    table = Table(title="task kinds", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("metrics")
    table.add_column("description")
    for name, kind in TASK_KINDS.items():
        table.add_row(name, ", ".join(kind.example().metric_names()), TASK_KINDS.describe(name))
    console.print(table)


@app.command()
def demo(
    seeds: Annotated[int, typer.Option(help="Seeds per model and correlation.")] = 3,
    n_train: Annotated[int, typer.Option(help="Training rows per synthetic dataset.")] = 10000,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on validation).")] = 40,
) -> None:
    """The MMoE paper's synthetic experiment, small: Shared-Bottom vs OMoE vs MMoE at task
    correlations 0.5, 0.9 and 1.0 (test RMSE, mean over seeds; lower is better)."""
    from polytask.demo import run_demo

    run_demo(seeds=seeds, n_train=n_train, epochs=epochs, console=_console())


def _print_metrics(metrics: dict, title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("split")
    table.add_column("task")
    table.add_column("metrics")
    for split, per_task in metrics.items():
        if not isinstance(per_task, dict):
            continue
        for task, values in per_task.items():
            if isinstance(values, dict):
                shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
                table.add_row(split, task, shown)
    _console().print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
