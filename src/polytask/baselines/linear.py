"""A linear model per task: logistic regression (binary, multinomial) or ridge regression over
standardised numerics and one-hot categoricals, the regularisation strength chosen on the
validation split. The floor any learned representation should clear."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from polytask.baselines.base import Baseline, labelled
from polytask.baselines.data import TabularSplit
from polytask.tuning import Param

#: the regularisation grid tried without ``--tune`` (inverse strength C for logistic regression)
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
#: ridge penalty grid (on standardised targets)
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)


class _Design:
    """Standardised numerics and one-hot categoricals (categories of the training split; an
    unseen one is all zeros), fitted on the task's training rows."""

    def __init__(self, split: TabularSplit, rows: np.ndarray) -> None:
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        self.scaler = StandardScaler().fit(split.numeric[rows]) if split.numeric.shape[1] else None
        self.onehot = (OneHotEncoder(handle_unknown="ignore").fit(split.categorical[rows])
                       if split.categorical.shape[1] else None)

    def __call__(self, split: TabularSplit, rows: np.ndarray | None = None) -> Any:
        import scipy.sparse as sp

        numeric = split.numeric if rows is None else split.numeric[rows]
        categorical = split.categorical if rows is None else split.categorical[rows]
        parts = []
        if self.scaler is not None:
            parts.append(sp.csr_matrix(self.scaler.transform(numeric)))
        if self.onehot is not None:
            parts.append(self.onehot.transform(categorical))
        return sp.hstack(parts, format="csr")


class Linear(Baseline):
    """Logistic / ridge regression per task, its regularisation chosen on validation."""

    name: ClassVar[str] = "linear"

    @staticmethod
    def _key(task: Any) -> str:
        return "alpha" if task.kind == "regression" else "C"

    def space(self, task: Any) -> dict[str, Param]:
        return {"alpha": Param("log", 1e-2, 1e4)} if task.kind == "regression" else {"C": Param("log", 1e-4, 1e2)}

    def candidates(self, task: Any) -> list[dict[str, Any]]:
        return [{self._key(task): v} for v in (ALPHA_GRID if task.kind == "regression" else C_GRID)]

    def fit(self, task: Any, train: TabularSplit, validation: TabularSplit, params: dict[str, Any], seed: int) -> Any:
        from sklearn.linear_model import LogisticRegression, Ridge

        rows = labelled(task, train)
        design = _Design(train, rows)
        y, w = train.labels[task.name][rows], train.weights[task.name]
        if task.kind == "regression":
            model = Ridge(alpha=params["alpha"], random_state=seed)
        else:
            model = LogisticRegression(C=params["C"], max_iter=2000, random_state=seed)
        model.fit(design(train, rows), y, sample_weight=w[rows] if w is not None else None)
        return design, model

    def output(self, model: Any, task: Any, split: TabularSplit) -> np.ndarray:
        design, fitted = model
        x = design(split)
        if task.kind == "regression":
            return fitted.predict(x).astype(np.float32)
        if task.kind == "binary":
            return fitted.decision_function(x).astype(np.float32)  # the logit
        out = np.full((split.num_rows, task.output_dim), -1e9)
        out[:, fitted.classes_.astype(int)] = fitted.predict_log_proba(x)  # a class absent from training: ~0
        return out.astype(np.float32)
