"""``polytask`` command line: train, evaluate, predict, list, demo, and the commands of
:mod:`polytask.commands` (report, compare, affinity).

Errors a user can fix (bad config key, missing column, unknown model) are printed as one line
naming the file, column or key, with exit code 2 and no traceback.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
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


def _fail(exc: BaseException) -> None:
    from polytask.errors import PolytaskError

    if isinstance(exc, OSError) and not isinstance(exc, PolytaskError):
        # an OSError polytask did not word itself (a read-only or full disk, a permission): the path
        # and the system's reason, on one line
        where = exc.filename if exc.filename is not None else "?"
        message = f"{where}: {exc.strerror or exc}"
    elif isinstance(exc, KeyError) and exc.args:  # str(KeyError("x")) is "'x'" (the repr)
        message = exc.args[0]
    else:
        message = exc
    typer.echo(f"error: {' '.join(str(message).split()) if isinstance(exc, OSError) else message}", err=True)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Warnings about a run's files (a damaged epoch log) as one ``warning: ...`` line each."""
    from polytask.run import RunFileWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunFileWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, RunFileWarning):
                    typer.echo(f"warning: {w.message}", err=True)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    set_: Annotated[list[str], typer.Option("--set", help="Override a config key: --set model.num_experts=4.")] = [],  # noqa: B006
    unset: Annotated[list[str], typer.Option("--unset", help="Remove a config key or section before --set: --unset model --set model.name=ple.")] = [],  # noqa: B006
    data_dir: DataDir = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run (<out>.partial) from its last completed epoch; start fresh if there is none.")] = False,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress bar.")] = None,
) -> None:
    """Train a model from a config; write the run directory (config, encoders, best checkpoint, metrics)."""
    from polytask.api import train_run
    from polytask.config import load_config
    from polytask.errors import PolytaskError

    overrides = list(set_) + ([f"train.progress={str(progress).lower()}"] if progress is not None else [])
    try:
        cfg = load_config(config, overrides, unset=list(unset))
        run = train_run(cfg, data_dir=data_dir, out=out, overwrite=overwrite, resume=resume)
    except (PolytaskError, KeyError, OSError) as exc:
        _fail(exc)
        return
    if run.directory is not None:  # under torchrun, only rank 0 wrote the run (and reports it)
        _print_metrics(run.metrics, title=f"{cfg.model.name} -> {out}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `polytask train`.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Labelled CSV/Parquet file, or a directory or glob of Parquet files (streamed), to evaluate on (default: the run's saved metrics are recomputed on its validation and test splits).")] = None,
    data_dir: DataDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table (a metric that is not a number is null).")] = False,
    stream: Annotated[bool, typer.Option("--stream", help="Stream a single Parquet --data file (a directory or glob always streams).")] = False,
) -> None:
    """Evaluate a trained run: on a labelled file, or again on the run's own validation/test splits.
    Parquet directories and globs (--data, or a streamed run's own splits) are streamed: only the
    predictions and labels are held. The table starts with each metric's mean over the tasks that have it."""
    from polytask.api import load_run
    from polytask.data.sources import load_splits
    from polytask.errors import PolytaskError

    from polytask.train.progress import batch_progress

    try:
        with _warnings_as_lines():
            run = load_run(run_dir)
            if data is not None:
                with batch_progress(f"evaluating {data.name}"):
                    metrics = {str(data): run.evaluate(data, source=str(data), stream=stream)}
            else:
                splits = load_splits(run.config.data, data_dir, stream=True)  # a streamed run's splits stay streamed
                metrics = {}
                for name in ("validation", "test"):
                    table = getattr(splits, name)
                    if table is not None:
                        with batch_progress(f"evaluating {name}"):
                            metrics[name] = run.evaluate(table, source=splits.sources.get(name, name))
    except (PolytaskError, KeyError, OSError) as exc:
        _fail(exc)
        return
    if json_out:  # strict JSON: NaN (an AUC on one class) is null, never the bare token NaN
        from polytask.fileio import json_dumps

        typer.echo(json_dumps(metrics, indent=1))
    else:
        _print_metrics(metrics, title=str(run_dir))


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `polytask train`.")],
    input: Annotated[Path, typer.Argument(help="CSV, Parquet, CoNLL-U (.conllu) or CoNLL-2000 (.conll) file with the feature columns.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write predictions (.parquet or .csv; CSV gets one <task>_proba_<class> column per class; .conllu or .conll: the input sentences with the predicted labels in place of the label columns).")],
    keep: Annotated[list[str], typer.Option("--keep", help="Input columns to copy into the output (e.g. an id).")] = [],  # noqa: B006
    stream: Annotated[bool, typer.Option("--stream", help="Stream a single Parquet file (a directory or glob always streams).")] = False,
) -> None:
    """Predict every task: one named column per task (probabilities for binary tasks); with a
    .conllu or .conll output, the input's sentences written back in that format with each task's
    predicted labels (tags, heads) in its label column. A directory or glob of Parquet files (or
    one with --stream) is streamed, row group by row group, into a .parquet or .csv output, so it
    may be larger than memory. The output file is replaced only once the predictions are complete;
    on any failure it is left as it was."""
    from polytask.api import load_run
    from polytask.data.stream_files import is_file_set
    from polytask.data.stream_predict import stream_format
    from polytask.errors import DataError, PolytaskError
    from polytask.fileio import write_predictions
    from polytask.train.progress import batch_progress

    try:
        fmt = _output_format(output)  # before anything is read, computed or created
        streamed = stream or is_file_set(input)
        if streamed:
            stream_format(output)
        with _warnings_as_lines():
            run = load_run(run_dir)
        if streamed:
            with batch_progress(f"predicting {input.name}"):
                written = run.predict_file(input, output, keep=list(keep))
            typer.echo(f"wrote {written.rows} rows x {len(written.columns)} columns ({', '.join(written.columns)}) "
                       f"to {output}")
            return
        if fmt in ("conllu", "conll"):
            if keep:
                raise DataError(f"--keep: a {output.suffix} output keeps every input column already (drop --keep)")
            with batch_progress(f"predicting {input.name}"):
                table = run.predict_labels(input, source=str(input))
        else:
            with batch_progress(f"predicting {input.name}"):
                table = run.predict_table(input, source=str(input), keep=list(keep), flat=fmt == "csv")
        write_predictions(table, output, fmt)
    except (PolytaskError, KeyError, OSError) as exc:
        _fail(exc)
        return
    typer.echo(f"wrote {table.num_rows} rows x {table.num_columns} columns ({', '.join(table.column_names)}) to {output}")


def _output_format(output: Path) -> str:
    from polytask.data.io import CONLL_SUFFIXES, CONLLU_SUFFIXES, CSV_SUFFIXES, PARQUET_SUFFIXES
    from polytask.errors import DataError
    from polytask.fileio import file_ancestor

    if output.is_dir():
        raise DataError(f"{output}: is a directory (give a file name: -o {output / 'predictions.parquet'})")
    name = output.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        fmt = "parquet"
    elif name.endswith(CSV_SUFFIXES):
        fmt = "csv"
    elif name.endswith(CONLLU_SUFFIXES):
        fmt = "conllu"
    elif name.endswith(CONLL_SUFFIXES):
        fmt = "conll"
    else:
        raise DataError(
            f"{output}: unknown output type (expected {', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES + CONLLU_SUFFIXES + CONLL_SUFFIXES)})"
        )
    blocking = file_ancestor(output)
    if blocking is not None:
        raise DataError(f"{output}: cannot write there ({blocking} is a file, not a directory)")
    return fmt


@app.command("list")
def list_(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show each component's hyperparameters with their defaults.")] = False,
) -> None:
    """List registered models, weightings, datasets, input encoders, column families, loggers and task kinds."""
    from rich.table import Table

    console = _console()
    if not verbose:  # names and descriptions from the saved catalog: no torch import (polytask/catalog.py)
        from polytask import catalog

        for title, entries in catalog.load().items():
            table = Table(title=title, title_justify="left", caption=None if entries else "(none registered)")
            table.add_column("name", style="bold")
            if "metrics" in (entries[0] if entries else {}):
                table.add_column("metrics")
            table.add_column("description")
            for e in entries:
                table.add_row(e["name"], *([", ".join(e["metrics"])] if "metrics" in e else []), e["description"])
            console.print(table)
        return
    from polytask.registry import COLUMNS, DATASETS, ENCODERS, LOGGERS, MODELS, TASK_KINDS, WEIGHTINGS

    registries = (("models", MODELS, ("input_spec", "tasks")), ("weightings", WEIGHTINGS, ("tasks",)),
                  ("datasets", DATASETS, ("data_dir",)), ("encoders (model.encoder)", ENCODERS, ("spec", "embedding_dim")),
                  ("column families (model.columns)", COLUMNS, _column_common()),
                  ("loggers (train.loggers)", LOGGERS, ("directory", "params", "path")))
    for title, reg, skip in registries:
        table = Table(title=title, title_justify="left", caption=None if reg.names() else "(none registered)")
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("hyperparameters (default)")
        for name in reg.names():
            table.add_row(name, reg.describe(name), _hyperparameters(reg.get(name), skip))
        console.print(table)
    table = Table(title="task kinds", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("metrics")
    table.add_column("description")
    table.add_column("options (default)")
    for name, kind in TASK_KINDS.items():
        table.add_row(name, ", ".join(kind.example().metric_names()), TASK_KINDS.describe(name), _hyperparameters(kind, ()))
    console.print(table)


def _column_common() -> tuple[str, ...]:
    from polytask.nn.columns.base import COMMON_ARGS

    return COMMON_ARGS


def _hyperparameters(obj: object, skip: tuple[str, ...]) -> str:
    """``name=default`` for each keyword parameter (``name`` alone when it has no default)."""
    import inspect

    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    shown = []
    for name, p in sig.parameters.items():
        if name in skip or name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            shown.append(f"{name} (required)")
        else:
            shown.append(f"{name}={p.default!r}")
    return ", ".join(shown) or "(none)"


@app.command()
def demo(
    seeds: Annotated[int, typer.Option(help="Seeds per model and correlation.")] = 3,
    n_train: Annotated[int, typer.Option(help="Training rows per synthetic dataset.")] = 10000,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on validation).")] = 40,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the runs and report.html go (runs there are replaced).")] = Path("runs/demo"),
) -> None:
    """The MMoE paper's synthetic experiment, small: Shared-Bottom vs OMoE vs MMoE at task
    correlations 0.5, 0.9 and 1.0 (test RMSE, mean over seeds; lower is better); ends by writing
    the HTML report of the runs and printing its path."""
    from polytask.demo import run_demo
    from polytask.errors import PolytaskError

    try:
        run_demo(seeds=seeds, n_train=n_train, epochs=epochs, console=_console(), out=out)
    except (PolytaskError, OSError) as exc:
        _fail(exc)


NOT_METRICS = ("count",)


def metric_means(per_task: dict) -> list[tuple[str, float, int]]:
    """``(metric, mean over the tasks that have it, number of tasks)`` for each metric, in the order
    the metrics first appear; NaN values (an AUC on one class) are left out of the mean."""
    import math

    values: dict[str, list[float]] = {}
    for task_metrics in per_task.values():
        if not isinstance(task_metrics, dict):
            continue
        for metric, value in task_metrics.items():
            if metric in NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                values.setdefault(metric, []).append(float(value))
    return [(m, sum(v) / len(v), len(v)) for m, v in values.items()]


def _print_metrics(metrics: dict, title: str) -> None:
    from rich.table import Table

    console = _console()
    for split, per_task in metrics.items():  # the summary first: one line per split and metric
        if isinstance(per_task, dict):
            for metric, mean, n in metric_means(per_task):
                console.print(f"{split}: mean {metric} {mean:.4f} over {n} task{'s' if n != 1 else ''}",
                              highlight=False, soft_wrap=True)
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
    console.print(table)


def _register_commands() -> None:
    """Add every sub-command module of :mod:`polytask.commands` (its ``COMMAND``) under its name."""
    import importlib
    import pkgutil

    import polytask.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        app.command(info.name.replace("_", "-"))(module.COMMAND)


_register_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
