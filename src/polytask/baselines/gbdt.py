"""Gradient-boosted trees per task (LightGBM; Ke et al., NeurIPS 2017): the baseline a
multi-task network on a table has to beat. Categorical ids are LightGBM categorical features;
the number of boosting rounds is chosen by early stopping on the task's validation rows."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

from polytask.baselines.base import Baseline, labelled
from polytask.baselines.data import TabularSplit
from polytask.tuning import Param

#: LightGBM's usual defaults, with row and column subsampling so the seed matters
DEFAULTS: dict[str, Any] = {"num_leaves": 31, "learning_rate": 0.05, "min_child_samples": 20}
MAX_ROUNDS = 2000
EARLY_STOPPING = 50
#: below this many training rows one thread is fastest (OpenMP's start-up and, on a busy machine,
#: its spinning threads cost more than the trees)
SMALL = 10_000


def _matrix(split: TabularSplit) -> np.ndarray:
    """Numerics, then categorical ids, as one float matrix."""
    return np.hstack([split.numeric.astype(np.float64), split.categorical.astype(np.float64)])


class GBDT(Baseline):
    """LightGBM per task: binary, multiclass or regression objective; early stopping on validation."""

    name: ClassVar[str] = "lightgbm"

    def space(self, task: Any) -> dict[str, Param]:
        return {"num_leaves": Param("int", 8, 128), "learning_rate": Param("log", 0.01, 0.3),
                "min_child_samples": Param("int", 5, 100)}

    def fit(self, task: Any, train: TabularSplit, validation: TabularSplit, params: dict[str, Any], seed: int) -> Any:
        import lightgbm as lgb

        rows, val_rows = labelled(task, train), labelled(task, validation)
        settings = dict(
            DEFAULTS, **params, n_estimators=MAX_ROUNDS, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
            random_state=seed, n_jobs=1 if len(rows) < SMALL else self.threads, deterministic=True,
            force_row_wise=True, verbose=-1,
        )
        model = lgb.LGBMRegressor(**settings) if task.kind == "regression" else lgb.LGBMClassifier(**settings)
        categorical = list(range(train.numeric.shape[1], train.numeric.shape[1] + train.categorical.shape[1]))
        x, y, w = _matrix(train)[rows], train.labels[task.name][rows], train.weights[task.name]
        fit_args: dict[str, Any] = {"categorical_feature": categorical or "auto"}
        if len(val_rows):
            vw = validation.weights[task.name]
            vx, vy = _matrix(validation)[val_rows], validation.labels[task.name][val_rows]
            if "eval_X" in inspect.signature(model.fit).parameters:  # LightGBM >= 4.6 names them so
                fit_args.update(eval_X=(vx,), eval_y=(vy,))
            else:
                fit_args.update(eval_set=[(vx, vy)])
            fit_args.update(eval_sample_weight=[vw[val_rows]] if vw is not None else None,
                            callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)])
        model.fit(x, y, sample_weight=w[rows] if w is not None else None, **fit_args)
        return model

    def output(self, model: Any, task: Any, split: TabularSplit) -> np.ndarray:
        x = _matrix(split)
        if task.kind == "regression":
            return model.predict(x).astype(np.float32)
        if task.kind == "binary":
            return model.predict(x, raw_score=True).astype(np.float32)  # the logit
        proba = model.predict_proba(x)
        out = np.full((len(x), task.output_dim), 1e-12)
        out[:, model.classes_.astype(int)] = proba  # a class absent from training keeps ~0
        return np.log(np.clip(out, 1e-12, 1.0)).astype(np.float32)

    def describe(self, model: Any) -> dict[str, Any]:
        best = getattr(model, "best_iteration_", None)
        return {"rounds": int(best) if best else int(model.n_estimators)}
