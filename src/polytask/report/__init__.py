"""``polytask report``: one self-contained HTML page of one or more training runs.

Per run: the run at a glance, its final metrics, training and validation curves, task weights
(per epoch and per logged step), task-gradient cosines, conflicts and norms, gates and experts,
the learned structure (mixing matrices, task correlation, branch tree, attention), calibration
of its binary tasks and its regularisation terms; with several runs, a comparison first (test
metrics side by side, Delta-m against the single-task run, validation curves overlaid). Every
plot is a PNG drawn with matplotlib's Agg renderer and embedded in the page, which loads nothing
from anywhere (no script, font or stylesheet), so it opens offline and can be mailed as one file.

Each section is a function from a run to HTML, listed in order in
:data:`polytask.report.sections.RUN_SECTIONS` (the comparison's in
:data:`polytask.report.comparison.COMPARISON_SECTIONS`); a section draws what the run logged,
whatever its model. A section that fails is replaced by one line saying so (and a
:class:`ReportWarning`); the rest of the report is still written.

Example::

    from polytask.report import write_report
    write_report(["runs/mmoe", "runs/single"], "report.html", data_dir="data")
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polytask.errors import DataError, PolytaskError

__all__ = ["ReportWarning", "render_report", "write_report"]


class ReportWarning(UserWarning):
    """A section of the report could not be drawn (the report is written without it)."""


def write_report(
    run_dirs: Sequence[str | os.PathLike] | str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    title: str | None = None,
) -> Path:
    """Write the HTML report of ``run_dirs`` to ``out_path`` (atomically) and return its path.

    ``data_dir`` is where the runs' datasets are read from for the calibration section (default:
    ``$POLYTASK_DATA_DIR``, else ``../shared/data``). A path that is not a run directory is a
    :class:`~polytask.errors.DataError` naming it, raised before anything is read or written; a
    damaged line of a run's ``metrics.jsonl`` is a :class:`~polytask.run.RunFileWarning` (the
    other epochs are reported)."""
    from polytask.fileio import atomic_write_text, file_ancestor, make_dirs

    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    out = Path(out_path)
    if out.is_dir():
        raise DataError(f"{out}: is a directory (give a file name: -o {out / 'report.html'})")
    blocking = file_ancestor(out)
    if blocking is not None:
        raise DataError(f"{out}: cannot write there ({blocking} is a file, not a directory)")
    page = render_report(run_dirs, data_dir=data_dir, title=title)
    if str(out.parent) not in ("", "."):
        make_dirs(out.parent)
    atomic_write_text(out, page)
    return out


def render_report(
    run_dirs: Sequence[str | os.PathLike],
    *,
    data_dir: str | os.PathLike | None = None,
    title: str | None = None,
) -> str:
    """The report's HTML (see :func:`write_report`)."""
    from polytask.report.loading import check_run_directories, load_runs

    check_run_directories(run_dirs)  # every path, before matplotlib is even looked for
    if importlib.util.find_spec("matplotlib") is None:
        raise PolytaskError("polytask report draws its plots with matplotlib, which is not installed: "
                            "pip install 'polytask[report]' (or matplotlib)")
    runs = load_runs(run_dirs)
    from polytask.report.plots import style
    from polytask.report.sections import Context

    ctx = Context(data_dir=Path(data_dir) if data_dir is not None else None)
    with style():
        return _page(runs, ctx, title)


def _page(runs: list[Any], ctx: Any, title: str | None) -> str:
    from polytask import __version__
    from polytask.report.comparison import COMPARISON_SECTIONS, anchor
    from polytask.report.html import document, esc, part
    from polytask.report.sections import RUN_SECTIONS

    title = title or (f"polytask report: {runs[0].name}" if len(runs) == 1 else f"polytask report: {len(runs)} runs")
    toc: list[tuple[str, str]] = []
    body = []
    if len(runs) > 1:
        parts = [part(f"comparison-{s.key}", s.title, html) for s in COMPARISON_SECTIONS
                 if (html := _draw(s.render, runs, ctx, f"comparison, {s.title}"))]
        body.append(f'<section class="comparison" id="comparison"><h2>Comparison of {len(runs)} runs</h2>'
                    f'{"".join(parts)}</section>')
        toc.append(("comparison", "Comparison"))
    for i, run in enumerate(runs):
        drawn = [(s, html) for s in RUN_SECTIONS if (html := _draw(s.render, run, ctx, f"{run.name}, {s.title}"))]
        parts = [part(f"{anchor(i)}-{s.key}", s.title, html) for s, html in drawn]
        body.append(f'<section class="run" id="{anchor(i)}"><h2>{esc(run.name)}</h2>{"".join(parts)}</section>')
        if len(runs) == 1:  # one run: its sections are the contents
            toc += [(f"{anchor(i)}-{s.key}", s.title) for s, _ in drawn]
        else:
            toc.append((anchor(i), run.name))
    subtitle = [f"{len(runs)} run{'s' if len(runs) != 1 else ''}: " + ", ".join(f"{r.name} ({r.model_name}, {r.weighting_name})" for r in runs),
                f"Written by polytask {__version__}; self-contained (plots embedded, nothing loaded from elsewhere)."]
    return document(title, subtitle, toc, "\n".join(body))


def _draw(render: Any, subject: Any, ctx: Any, where: str) -> str | None:
    """A section's HTML; when drawing it fails, one line saying so (and a ReportWarning)."""
    from polytask.report.html import warn

    try:
        return render(subject, ctx)
    except Exception as exc:  # noqa: BLE001 - one broken section must not cost the whole report
        message = f"{where}: this section could not be drawn ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
        warnings.warn(message, ReportWarning, stacklevel=2)
        return warn(message)
