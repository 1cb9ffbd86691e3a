"""``polytask report RUN_DIR [RUN_DIR ...] -o report.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories written by `polytask train` (several: compared side by side).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Folder of datasets, for the calibration of binary tasks (default: $POLYTASK_DATA_DIR, else ../shared/data).")] = None,
    title: Annotated[Optional[str], typer.Option("--title", help="The report's title.")] = None,
) -> None:
    """Write one self-contained HTML report (plots embedded, opens offline) of one or more runs:
    metrics, training curves, task weights, gradient conflicts, gates and experts, learned
    structure, calibration; with several runs, a comparison with Delta-m against the
    single-task run among them."""
    import warnings

    from polytask.cli import _fail
    from polytask.errors import PolytaskError
    from polytask.report import ReportWarning, write_report
    from polytask.run import RunFileWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunFileWarning)
        warnings.simplefilter("always", ReportWarning)
        try:
            path = write_report(run_dirs, output, data_dir=data_dir, title=title)
        except (PolytaskError, KeyError, OSError) as exc:
            failed: BaseException | None = exc
        else:
            failed = None
    for w in caught:  # a damaged epoch log, a section that could not be drawn: one line each
        if issubclass(w.category, (RunFileWarning, ReportWarning)):
            typer.echo(f"warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if failed is not None:
        _fail(failed)
        return
    size = path.stat().st_size
    typer.echo(f"wrote {path} ({len(run_dirs)} run{'s' if len(run_dirs) != 1 else ''}, {size / 1024:,.0f} KiB)")


COMMAND = report
