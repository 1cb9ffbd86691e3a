"""Non-neural baselines ``polytask compare`` trains beside the neural models, on the same split
and scored by the same metric functions: per-task gradient-boosted trees and a linear model, so a
user sees whether multi-task learning helps at all on their table.

``BASELINES`` maps a name (the row label in the comparison) to its class; each module imports
its heavy library (lightgbm, scikit-learn) only when it fits.
"""

from __future__ import annotations

from polytask.baselines.base import Baseline, fit_baseline
from polytask.baselines.data import TABULAR_FEATURES, TABULAR_KINDS, TabularSplit, load_tabular, unsupported
from polytask.baselines.gbdt import GBDT
from polytask.baselines.linear import Linear

BASELINES: dict[str, type[Baseline]] = {GBDT.name: GBDT, Linear.name: Linear}

__all__ = ["BASELINES", "GBDT", "TABULAR_FEATURES", "TABULAR_KINDS", "Baseline", "Linear", "TabularSplit",
           "fit_baseline", "load_tabular", "unsupported"]
