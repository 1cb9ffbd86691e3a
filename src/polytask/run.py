"""A trained model with everything needed to use it: config, fitted encoders, weights.

A run directory holds:

- ``config.yaml``: the resolved configuration (every default filled in);
- ``encoders.json``: the encoders fitted on the training split, and the tasks;
- ``model.pt``: the best checkpoint (by the validation monitor) and the model's input spec;
- ``metrics.jsonl``: one line per epoch (training losses, task weights, validation metrics,
  gate diagnostics, timings);
- ``metrics.json``: final ``{"validation": {task: {metric: value}}, "test": {...}}``;
- ``data.json``: where each split came from and how it was made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import yaml

from polytask.config import Config, config_from_dict
from polytask.data.io import to_arrow
from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import InputSpec
from polytask.errors import DataError
from polytask.models import MultiTaskModel, create_model
from polytask.train.trainer import evaluate_table, predict_raw, resolve_device

CONFIG, ENCODERS, CHECKPOINT, LOG, METRICS, DATA = (
    "config.yaml", "encoders.json", "model.pt", "metrics.jsonl", "metrics.json", "data.json"
)


class Run:
    """Predict with, evaluate and save a trained multi-task model."""

    def __init__(
        self,
        config: Config,
        preprocessor: Preprocessor,
        model: MultiTaskModel,
        *,
        history: list[dict[str, Any]] | None = None,
        metrics: dict[str, Any] | None = None,
        directory: str | os.PathLike | None = None,
    ) -> None:
        self.config = config
        self.preprocessor = preprocessor
        self.model = model
        self.tasks = preprocessor.tasks
        self.history = history or []
        self.metrics = metrics or {}
        self.directory = Path(directory) if directory else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- use -------------------------------------------------------------------------------------
    def predict(self, data: Any, *, source: str = "input") -> dict[str, np.ndarray]:
        """``{task: predictions}``: P(y=1) for binary, values for regression, class probabilities
        ``[N, C]`` for multiclass. Labels in ``data`` are not needed."""
        table = self.preprocessor.transform(to_arrow(data, source), source, with_labels=False)
        raw = predict_raw(self.model, table, [t.name for t in self.tasks], self.config.train.eval_batch_size, self.device)
        return {t.name: t.predict(raw[t.name]).numpy() for t in self.tasks}

    def predict_table(self, data: Any, *, source: str = "input", keep: list[str] | None = None) -> pa.Table:
        """Predictions as a table with the columns each task's kind writes (one named column per
        task; multiclass adds ``<task>_proba`` with the class probabilities), after any ``keep``
        columns of ``data``."""
        arrow = to_arrow(data, source)
        missing = [c for c in keep or [] if c not in arrow.column_names]
        if missing:
            raise DataError(f"{source}: --keep column(s) {', '.join(map(repr, missing))} not found")
        preds = self.predict(arrow, source=source)
        columns: dict[str, Any] = {c: arrow.column(c) for c in keep or []}
        for t in self.tasks:
            columns.update(t.spec.prediction_columns(t.name, preds[t.name], arrow))
        return pa.table(columns)

    def evaluate(self, data: Any, *, source: str = "input") -> dict[str, Any]:
        """``{task: {metric: value}}`` (plus ``loss``) on a labelled table or file."""
        table = self.preprocessor.transform(to_arrow(data, source), source)
        return evaluate_table(self.model, self.tasks, table, self.config.train.eval_batch_size, self.device)

    # -- persistence -------------------------------------------------------------------------------
    def save_static(self, directory: str | os.PathLike) -> None:
        """Write config and encoders (known before training)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / CONFIG).write_text(yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        self.preprocessor.save(d / ENCODERS)

    def save_checkpoint(self, directory: str | os.PathLike, epoch: int | None = None) -> None:
        torch.save(
            {
                "model": self.config.model.name,
                "params": {**self.config.model.params(), **self.model.structure()},
                "input_spec": self.model.input_spec.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "epoch": epoch,
            },
            Path(directory) / CHECKPOINT,
        )

    def save(self, directory: str | os.PathLike) -> None:
        self.save_static(directory)
        self.save_checkpoint(directory)
        if self.metrics:
            (Path(directory) / METRICS).write_text(json.dumps(self.metrics, indent=1, default=str))

    @classmethod
    def load(cls, directory: str | os.PathLike, *, device: str = "cpu") -> Run:
        """Load a run directory written by ``polytask train`` / :func:`polytask.fit`."""
        d = Path(directory)
        for name in (CONFIG, ENCODERS, CHECKPOINT):
            if not (d / name).is_file():
                raise DataError(f"{d}: not a run directory ({name} is missing)")
        config = config_from_dict(yaml.safe_load((d / CONFIG).read_text()))
        pre = Preprocessor.load(d / ENCODERS)
        ckpt = torch.load(d / CHECKPOINT, map_location="cpu", weights_only=True)
        model = create_model(ckpt["model"], InputSpec.from_dict(ckpt["input_spec"]), pre.tasks, ckpt["params"])
        model.load_state_dict(ckpt["state_dict"])
        model.to(resolve_device(device)).eval()
        metrics = json.loads((d / METRICS).read_text()) if (d / METRICS).is_file() else {}
        history = []
        if (d / LOG).is_file():
            history = [json.loads(line) for line in (d / LOG).read_text().splitlines() if line.strip()]
        return cls(config, pre, model, history=history, metrics=metrics, directory=d)
