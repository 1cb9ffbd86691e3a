"""``polytask compare``: train a grid of models (x weightings) over seeds, with single-task and
non-neural baselines, and write a table of means, 95% intervals and Delta-m (see
:func:`polytask.compare.compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def COMMAND(  # noqa: N802 - the name polytask.cli registers
    config: Annotated[Path, typer.Argument(help="YAML config file (data, train.monitor, optimiser, model sizes).")],
    models: Annotated[str, typer.Option("--models", help="Comma-separated models to compare (single_task is added).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write runs/, compare.md, compare.json, compare.html.")],
    weightings: Annotated[Optional[str], typer.Option("--weightings", help="Comma-separated weightings: every model with each (default: the config's).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per cell (0, 1, ...).")] = 5,
    jobs: Annotated[int, typer.Option("--jobs", help="Runs trained at once, in separate processes.")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a comparison in OUT_DIR: finished runs are read back, not retrained.")] = False,
    tune: Annotated[int, typer.Option("--tune", help="Optuna trials per cell on the first seed, scored on validation (0: no search).")] = 0,
    baselines: Annotated[Optional[bool], typer.Option("--baselines/--no-baselines", help="LightGBM and linear models per task beside the networks (default: when every feature is numeric or categorical).")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override a config key: --set train.epochs=5; --set <model>.<param>=v sets one model's parameter (--set single_task.hidden=[64]).")] = [],  # noqa: B006
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Folder of datasets (default: $POLYTASK_DATA_DIR, else ../shared/data).")] = None,
) -> None:
    """Compare models over seeds, with 95% intervals, Delta-m against single-task and baselines.

    Each (model, weighting, seed) is a run directory in OUT_DIR/runs;
    LightGBM and linear baselines per task use the same split.
    compare.md/.json/.html: mean, std and 95% interval per metric,
    Delta-m paired by seed, and which differences are within noise."""
    from polytask.errors import PolytaskError

    try:
        from polytask.compare import compare

        result = compare(config, _names(models), out=out, weightings=_names(weightings), seeds=seeds, jobs=jobs,
                         resume=resume, tune=tune, baselines=baselines, overrides=list(set_), data_dir=data_dir)
    except (PolytaskError, KeyError, OSError) as exc:
        from polytask.cli import _fail

        _fail(exc)
        return
    typer.echo(result["markdown"])
    typer.echo(f"wrote {out / 'compare.md'}, {out / 'compare.json'} and {out / 'compare.html'}")
