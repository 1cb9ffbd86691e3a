"""Fit every encoder on the training split, then turn any split into a :class:`TensorTable`.

The fitted state is plain JSON (``encoders.json`` in a run directory), so a saved model can encode
new files exactly as its training data was encoded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from polytask.data.conditions import parse_condition
from polytask.data.encoders import ENCODERS
from polytask.data.labels import LabelEncoder
from polytask.data.schema import FeatureSpec, InputSpec
from polytask.data.table import TensorTable
from polytask.errors import DataError
from polytask.tasks import Task


class Preprocessor:
    """Encoders for a list of features and tasks."""

    def __init__(self, features: list[FeatureSpec], tasks: list[Task]) -> None:
        if not features:
            raise DataError("no input features: declare features (numeric/categorical/...) in the data config")
        names = [f.name for f in features]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise DataError(f"feature(s) declared twice: {', '.join(sorted(dup))}")
        labels = {t.label for t in tasks}
        clash = labels & set(names)
        if clash:
            raise DataError(f"column(s) {', '.join(sorted(clash))} are both a feature and a task label")
        by_name = {f.name: f for f in features}
        for t in tasks:  # e.g. a tagging task's text feature: declared, a sequence, same max_len
            t.spec.check_inputs(t, by_name)
        self.features = features
        self.tasks = tasks
        self.encoders = {f.name: ENCODERS[f.type](f) for f in features}
        self.label_encoders = {t.name: LabelEncoder(t) for t in tasks}
        self.fitted = False

    # -- checks -----------------------------------------------------------------------------
    def required_columns(self, with_labels: bool = True) -> list[str]:
        cols = [f.name for f in self.features]
        if with_labels:
            for t in self.tasks:
                cols.extend(t.label_columns())
                if t.weight_column:
                    cols.append(t.weight_column)
                if t.where:
                    cols.extend(c for c, _, _ in parse_condition(t.where))
        return list(dict.fromkeys(cols))

    def check_columns(self, table: pa.Table, source: str, with_labels: bool = True) -> None:
        missing = [c for c in self.required_columns(with_labels) if c not in table.column_names]
        if missing:
            raise DataError(f"{source}: missing column(s) {', '.join(repr(c) for c in missing)}")

    # -- fit / transform --------------------------------------------------------------------
    def fit(self, table: pa.Table, source: str = "train") -> Preprocessor:
        """Fit encoders and multiclass label sets on the training split only."""
        self.check_columns(table, source)
        for f in self.features:
            self.encoders[f.name].fit(table.column(f.name), source)
        for t in self.tasks:
            self.label_encoders[t.name].fit(table, source)
        self.fitted = True
        return self

    def transform(self, table: pa.Table, source: str = "<table>", with_labels: bool = True) -> TensorTable:
        if not self.fitted:
            raise RuntimeError("Preprocessor.transform called before fit")
        self.check_columns(table, source, with_labels)
        n = table.num_rows
        spec = self.input_spec()
        # numeric and categorical columns are written straight into one preallocated array each
        # (no per-column list + concatenate, which would hold the data twice); categorical ids are
        # int32, half the memory of int64 and enough for any vocabulary
        numeric = np.empty((n, spec.numeric_dim), dtype=np.float32) if spec.numeric_dim else None
        categorical = np.empty((n, len(spec.cardinalities)), dtype=np.int32) if spec.cardinalities else None
        out: dict[str, torch.Tensor] = {}
        num_col = cat_col = 0
        for f in self.features:
            arr = self.encoders[f.name].transform(table.column(f.name), source)
            if f.type == "numeric":
                numeric[:, num_col : num_col + arr.shape[1]] = arr
                num_col += arr.shape[1]
            elif f.type == "categorical":
                categorical[:, cat_col] = arr
                cat_col += 1
            elif f.type == "sequence":
                out[f"seq:{f.name}"] = torch.from_numpy(arr)
            else:
                out[f"dense:{f.name}"] = torch.from_numpy(np.ascontiguousarray(arr))
        if numeric is not None:
            out["numeric"] = torch.from_numpy(numeric)
        if categorical is not None:
            out["categorical"] = torch.from_numpy(categorical)
        labels, masks, weights = {}, {}, {}
        if with_labels:
            for t in self.tasks:
                label, mask, weight = self.label_encoders[t.name].encode(table, source)
                labels[t.name] = torch.from_numpy(label)
                masks[t.name] = torch.from_numpy(mask)
                if weight is not None:
                    weights[t.name] = torch.from_numpy(weight)
        return TensorTable(out, labels, masks, weights)

    # -- what models need -------------------------------------------------------------------
    def input_spec(self) -> InputSpec:
        spec = InputSpec()
        for f in self.features:
            enc = self.encoders[f.name]
            if f.type == "numeric":
                spec.numeric_dim += enc.width
                spec.numeric_names.append(f.name)
            elif f.type == "categorical":
                spec.cardinalities.append(enc.cardinality)
                spec.categorical_names.append(f.name)
            elif f.type == "sequence":
                spec.sequences[f.name] = enc.vocab_size
            else:
                spec.dense[f.name] = list(enc.shape)
        return spec

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [{"spec": f.to_dict(), "state": self.encoders[f.name].state()} for f in self.features],
            "tasks": [t.to_dict() for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        features = [FeatureSpec(**e["spec"]) for e in d["features"]]
        tasks = [Task(**t) for t in d["tasks"]]
        pre = cls(features, tasks)
        for f, e in zip(features, d["features"]):
            pre.encoders[f.name].load(e["state"])
        pre.fitted = True
        return pre

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Preprocessor:
        return cls.from_dict(json.loads(Path(path).read_text()))
