"""``make demo`` / ``polytask demo``: the MMoE paper's synthetic experiment at a small size.

Shared-Bottom, OMoE and MMoE (the paper's Sec. 5.1 sizes: 8 experts of 16 units, towers of 8, a
113-unit shared bottom with about the same number of parameters) trained on the generator of
Sec. 3.2 at task correlations 0.5, 0.9 and 1.0, each run on freshly generated data. The table
shows test RMSE averaged over the two tasks (lower is better): MMoE should be no worse than
Shared-Bottom at every correlation, with the widest gap at 0.5. The full-size version with more
seeds and a single-task baseline is ``benchmarks/synthetic_mmoe.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from polytask.compare import run_grid, summarize

CORRELATIONS = (0.5, 0.9, 1.0)
MODELS: dict[str, dict[str, Any]] = {
    "Shared-Bottom": {"model": {"name": "shared_bottom", "bottom_hidden": [113], "tower_hidden": [8]}},
    "OMoE": {"model": {"name": "omoe", "num_experts": 8, "expert_hidden": [16], "tower_hidden": [8]}},
    "MMoE": {"model": {"name": "mmoe", "num_experts": 8, "expert_hidden": [16], "tower_hidden": [8]}},
}


def synthetic_config(correlation: float, n_train: int, epochs: int, *, n_eval: int = 2000, lr: float = 1e-3) -> dict[str, Any]:
    return {
        "data": {
            "dataset": "synthetic_mmoe",
            "params": {"correlation": correlation, "n_train": n_train, "n_validation": n_eval, "n_test": n_eval},
        },
        "optimizer": {"name": "adam", "lr": lr},
        # one thread: these models are small enough that a second thread only adds synchronisation
        "train": {"epochs": epochs, "batch_size": 128, "patience": 4, "progress": False, "threads": 1},
    }


def run_demo(seeds: int = 3, n_train: int = 10000, epochs: int = 40, console: Any = None,
             out: str | os.PathLike | None = None) -> dict[float, dict[str, Any]]:
    """Run the comparison and print the result table; returns the summaries. Progress is a bar on a
    terminal, one line per trained run otherwise. With ``out``, every run is saved as
    ``<out>/corr<p>/<model>-seed<k>`` and the report of the first seed's runs at the lowest
    correlation (where the models differ most) is written to ``<out>/report.html``."""
    import time

    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.table import Table

    console = console or Console()
    tasks, metrics = ["y1", "y2"], {"y1": ["rmse"], "y2": ["rmse"]}
    results: dict[float, dict[str, Any]] = {}
    total = len(CORRELATIONS) * len(MODELS) * seeds
    live = console.is_terminal
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("eta"), TimeRemainingColumn(), console=console, disable=not live)
    started, done = time.perf_counter(), [0]
    with progress:
        runs = progress.add_task("runs", total=total)
        epoch_bar = progress.add_task("epochs", total=epochs)

        def on_epoch(trainer: Any, record: dict[str, Any]) -> None:
            progress.update(epoch_bar, completed=record["epoch"])

        for p in CORRELATIONS:
            def on_result(row: dict[str, Any], p: float = p) -> None:
                progress.advance(runs)
                progress.reset(epoch_bar)
                progress.update(epoch_bar, description="epochs")
                done[0] += 1
                if not live:  # a log file or a pipe: one plain line per run, never minutes of silence
                    rmse = ", ".join(f"{t} {row['test'][t]['rmse']:.4f}" for t in tasks)
                    console.print(f"[{done[0]}/{total}] correlation {p} {row['model']} seed {row['seed']}: test RMSE "
                                  f"{rmse} ({row['epochs']} epochs; {time.perf_counter() - started:.0f} s so far)",
                                  highlight=False, soft_wrap=True)

            progress.update(runs, description=f"runs (correlation {p})")
            rows = run_grid(synthetic_config(p, n_train, epochs), MODELS, range(seeds),
                            seed_keys=("train.seed", "data.params.seed"), on_result=on_result, callbacks=[on_epoch],
                            out=Path(out) / f"corr{p}" if out is not None else None)
            results[p] = summarize(rows, tasks, metrics, baseline=None)
            if out is not None and p == CORRELATIONS[0]:
                reported = [r["directory"] for r in rows if r["seed"] == 0]

    table = Table(title=f"Synthetic MMoE benchmark: test RMSE, mean of 2 tasks over {seeds} seeds (lower is better)",
                  title_justify="left")
    table.add_column("model", style="bold")
    for p in CORRELATIONS:
        table.add_column(f"corr {p}", justify="right")
    for label in MODELS:
        cells = []
        for p in CORRELATIONS:
            s = results[p][label]
            cells.append(f"{(s['y1']['rmse']['mean'] + s['y2']['rmse']['mean']) / 2:.4f}")
        table.add_row(label, *cells)
    console.print(table)
    if out is not None:
        _write_report(reported, Path(out) / "report.html", console)
    return results


def _write_report(run_dirs: list[str], path: Path, console: Any) -> None:
    """The report of ``run_dirs``; without the report extra (matplotlib), a line saying how to get it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        console.print("(pip install 'polytask[report]' to get the HTML report of these runs)")
        return
    from polytask.report import write_report

    write_report(run_dirs, path, title=f"polytask demo: Shared-Bottom, OMoE and MMoE at task correlation {CORRELATIONS[0]}")
    console.print(f"report of the runs at correlation {CORRELATIONS[0]} (seed 0): {path} (open it in a browser; "
                  f"every run is in {path.parent})", highlight=False, soft_wrap=True)
