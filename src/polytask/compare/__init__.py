"""Compare models over several seeds: mean, std and 95% confidence interval of every test metric,
and Delta-m against the single-task baseline paired by seed. Used by ``polytask compare``, the
benchmarks and ``polytask demo``.

Each (model, seed) run selects its epoch on the validation split; only its final test metrics
enter the comparison. Delta-m is computed per seed against the baseline's run with the same seed
(same data and split), then averaged; a difference is *within noise* when the 95% Student-t
interval of its per-seed values includes 0.

:func:`compare` is the whole ``polytask compare`` job: the grid of cells (model x weighting, plus
single-task and the non-neural baselines of :mod:`polytask.baselines`) over seeds, each neural
run saved as a normal run directory, optionally a seeded Optuna search per cell
(:mod:`polytask.tuning`), and ``compare.md``/``.json``/``.html``.
"""

from polytask.compare.cells import Cell, cell_config, plan_cells, run_name, split_overrides
from polytask.compare.grid import merge, run_grid, run_row
from polytask.compare.job import compare
from polytask.compare.stats import LEVEL, SINGLE_TASK, confidence_interval, summarize, t_quantile, within_noise
from polytask.compare.tables import BETTER, FOOTNOTE, WITHIN, WORSE, html_table, markdown_table

__all__ = [
    "BETTER", "FOOTNOTE", "LEVEL", "SINGLE_TASK", "WITHIN", "WORSE", "Cell", "cell_config", "compare",
    "confidence_interval", "html_table", "markdown_table", "merge", "plan_cells", "run_grid", "run_name", "run_row",
    "split_overrides", "summarize", "t_quantile", "within_noise",
]
