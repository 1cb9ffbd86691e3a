"""The tables the baselines learn from: the run's own splits, encoded by the run's own
:class:`~polytask.data.preprocessor.Preprocessor`, so a baseline sees exactly the rows, labels and
masks a neural run sees (missing labels and rows outside a task's ``where`` sample space masked
out; regression targets in the same standard units; classes in the same order) and is scored by
the same metric functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from polytask.errors import ConfigError

#: feature types a baseline reads (one column per number or category)
TABULAR_FEATURES = ("numeric", "categorical")
#: task kinds a baseline predicts (one output per row)
TABULAR_KINDS = ("binary", "multiclass", "regression")


@dataclass
class TabularSplit:
    """One split as matrices: standardised numerics ``[N, D]`` (missing values imputed, with
    indicator columns), categorical ids ``[N, K]`` (0: unseen or missing), and per task the
    encoded label, the mask (True: the row counts for the task) and the row weights (or None)."""

    numeric: np.ndarray
    categorical: np.ndarray
    labels: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    weights: dict[str, np.ndarray | None]

    @property
    def num_rows(self) -> int:
        return len(self.numeric)


def unsupported(features: list[Any], tasks: list[Any]) -> str | None:
    """Why the baselines cannot run on these features and tasks (one phrase), or None."""
    other = [f"{f.name} ({f.type})" for f in features if f.type not in TABULAR_FEATURES]
    if other:
        return (f"the baselines read numeric and categorical features only; feature(s) {', '.join(other[:3])}"
                f"{' and more' if len(other) > 3 else ''} are not")
    kinds = [f"{t.name} ({t.kind})" for t in tasks if t.kind not in TABULAR_KINDS]
    if kinds:
        return f"the baselines predict {', '.join(TABULAR_KINDS)} tasks only; task(s) {', '.join(kinds)} are not"
    return None


def load_tabular(config: Any, data_dir: str | os.PathLike | None = None) -> tuple[list[Any], dict[str, TabularSplit]]:
    """The run's tasks and its ``train``/``validation``/``test`` splits as :class:`TabularSplit`
    (``config``: a :class:`~polytask.config.Config`). ConfigError when a feature or task kind is
    not tabular, or the config has no validation or test split."""
    from polytask.data.preprocessor import Preprocessor
    from polytask.data.sources import load_splits

    splits = load_splits(config.data, data_dir)
    reason = unsupported(splits.features, splits.tasks)
    if reason is not None:
        raise ConfigError(f"--baselines: {reason}; pass --no-baselines")
    for name in ("validation", "test"):
        if getattr(splits, name) is None:
            raise ConfigError(f"--baselines: the data has no {name} split (data.{name} or data.split.{name})")
    pre = Preprocessor(splits.features, splits.tasks)
    pre.fit(splits.train, splits.sources.get("train", "train"))
    out = {}
    for name in ("train", "validation", "test"):
        table = pre.transform(getattr(splits, name), splits.sources.get(name, name))
        n = table.num_rows
        numeric = table.features.get("numeric")
        categorical = table.features.get("categorical")
        out[name] = TabularSplit(
            numeric=numeric.numpy() if numeric is not None else np.zeros((n, 0), np.float32),
            categorical=categorical.numpy().astype(np.int64) if categorical is not None else np.zeros((n, 0), np.int64),
            labels={t: v.numpy() for t, v in table.labels.items()},
            masks={t: v.numpy().astype(bool) for t, v in table.masks.items()},
            weights={t.name: (table.weights[t.name].numpy() if t.name in table.weights else None) for t in pre.tasks},
        )
    return pre.tasks, out
