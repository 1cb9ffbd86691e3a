"""Fit every encoder on the training split, then turn any split into a :class:`TensorTable`.

The fitted state is plain JSON (``encoders.json`` in a run directory), so a saved model can encode
new files exactly as its training data was encoded.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from polytask.data.conditions import parse_condition
from polytask.data.encoders import ENCODERS, count_shared, fit_shared
from polytask.data.io import file_rows, source_directory
from polytask.data.labels import LabelEncoder
from polytask.data.schema import FeatureSpec, InputSpec, shared_groups
from polytask.data.table import TensorTable
from polytask.errors import DataError
from polytask.tasks import Task


@contextmanager
def rows_of_file(table: pa.Table):
    """A DataError raised while encoding ``table`` names the row of the FILE: when ``table`` is
    a part carved from a file by a seeded split (validation/test from ``train``), the row it
    names (its index in the shuffled part) is mapped to the file's row (0-based, header
    excluded). The one place split rows are mapped; the encoders and kinds name their own row."""
    try:
        yield
    except DataError as exc:
        row = exc.named_row()
        rows = file_rows(table) if row is not None else None
        if rows is None or not 0 <= row < len(rows):
            raise
        raise exc.at_file_row(int(rows[row])) from None


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
        for f in features:
            if f.vocabulary is None:
                continue
            root = by_name.get(f.vocabulary)
            if root is None or root.type != "sequence":
                raise DataError(
                    f"data.features: sequence feature {f.name!r} shares the vocabulary of {f.vocabulary!r}, which is not a "
                    f"declared sequence feature"
                )
            if root.vocabulary is not None:
                raise DataError(
                    f"data.features: {f.name!r} shares the vocabulary of {root.name!r}, which shares {root.vocabulary!r}'s; "
                    f"name {root.vocabulary!r} directly"
                )
            if (f.char_ngrams, f.max_ngrams, f.min_count) != (root.char_ngrams, root.max_ngrams, root.min_count):
                raise DataError(
                    f"data.features: {f.name!r} shares the vocabulary of {root.name!r}, so char_ngrams, max_ngrams and "
                    f"min_count must be the same as {root.name!r}'s"
                )
        #: sequence feature -> the features sharing its vocabulary
        self.sharing = {f.name: [g.name for g in features if g.vocabulary == f.name] for f in features}
        #: shared_with: feature -> the features using its vocabulary and embedding table (itself first)
        self.shared = {root: [g.name for g in group] for root, group in shared_groups(features).items()}
        for t in tasks:  # e.g. a tagging task's text feature: declared, a sequence, same max_len
            t.spec.check_inputs(t, by_name)
        self.features = features
        self.tasks = tasks
        self.encoders = {f.name: ENCODERS[f.type](f) for f in features}
        self.label_encoders = {t.name: LabelEncoder(t) for t in tasks}
        self.fitted = False
        self._train_labels = None
        #: multi-source runs: columns some source's rows do not have (all empty there), which an
        #: input from another source may leave out (filled empty); the tasks of another source
        #: may likewise lack their label columns (unlabelled)
        self.optional_columns: list[str] = []

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

    def _optional(self) -> list[str]:
        """Columns an input may lack: :attr:`optional_columns`, and in a multi-source run the
        label columns of every task (a file of one source holds no label of another's tasks)."""
        out = list(self.optional_columns)
        for t in self.tasks:
            if t.source is not None:
                out += [*t.label_columns(), *([t.weight_column] if t.weight_column else [])]
        return list(dict.fromkeys(out))

    def check_columns(self, table: pa.Table, source: str, with_labels: bool = True) -> None:
        optional = set(self._optional())
        missing = [c for c in self.required_columns(with_labels) if c not in table.column_names and c not in optional]
        if missing:
            raise DataError(f"{source}: missing column(s) {', '.join(repr(c) for c in missing)}")

    def _complete(self, table: pa.Table) -> pa.Table:
        """``table`` with the optional columns it lacks added, empty (see :attr:`optional_columns`)."""
        for c in self._optional():
            if c not in table.column_names:
                table = table.append_column(c, pa.nulls(table.num_rows))
        return table

    @staticmethod
    def _source_gaps(table: pa.Table, columns: list[str]) -> list[str]:
        """The ``columns`` entirely empty in the rows of some source of a multi-source table."""
        import pyarrow.compute as pc

        from polytask.data.labels import SOURCE_COLUMN

        if SOURCE_COLUMN not in table.column_names:
            return []
        gaps = []
        sources = table.column(SOURCE_COLUMN)
        for name in pc.unique(sources).to_pylist():
            rows = table.filter(pc.equal(sources, name))
            gaps += [c for c in columns if c in rows.column_names and rows.column(c).null_count == rows.num_rows]
        return list(dict.fromkeys(gaps))

    # -- fit / transform --------------------------------------------------------------------
    def fit(self, table: pa.Table, source: str = "train") -> Preprocessor:
        """Fit encoders and label state on the training split only, and refuse a task that can
        never train: a label column with no label in the split, a ``where`` condition that
        selects no row of it (or none with a label)."""
        self.check_columns(table, source)
        self.optional_columns = self._source_gaps(table, self.required_columns())
        directory = source_directory(table)
        with rows_of_file(table):
            for f in self.features:
                if f.vocabulary is not None or f.shared_with is not None:
                    continue  # fitted with the feature whose vocabulary it shares
                if f.name in self.shared:
                    fit_shared(self.encoders[f.name], self._shared_columns(f.name, table), source)
                    continue
                if f.type == "image":  # relative paths: against the directory of the table's file
                    self.encoders[f.name].fit(table.column(f.name), source, directory=directory)
                    continue
                others = [table.column(g) for g in self.sharing[f.name]]
                self.encoders[f.name].fit(table.column(f.name), source, *others)
                for g in self.sharing[f.name]:
                    self.encoders[g].load(self.encoders[f.name].state())
            parts = self.fit_labels(table, source)
        self._train_labels = (table, source, parts)  # transform(train) reuses them
        self.fitted = True
        return self

    def fit_labels(self, table: pa.Table, source: str) -> dict[str, tuple]:
        """Fit each task's label state (classes, target scaling) on ``table`` (the training rows'
        task columns) and refuse a task that can never train; returns the encoded label parts."""
        parts = {}
        for t in self.tasks:
            enc = self.label_encoders[t.name]
            enc.fit(table, source)
            parts[t.name] = enc.encode_parts(table, source)
            self._check_trainable(t, *parts[t.name][:3], source)
        return parts

    # -- streaming fit (training sets larger than memory, see polytask.data.streaming) -----------
    def partial_fit(self, table: pa.Table, source: str) -> Preprocessor:
        """Add one chunk of training rows (a row group) to every feature encoder's running state
        (value counts, float64 moments); :meth:`finish` fixes the encoders. Each encoder's
        ``fit`` is one ``partial_fit`` then ``finish``, so a streamed fit over row groups gives
        the state the in-memory fit of the whole table gives. Image features are refused."""
        self.check_columns(table, source, with_labels=False)
        with rows_of_file(table):
            for f in self.features:
                if f.vocabulary is not None or f.shared_with is not None:
                    continue  # fitted with the feature whose vocabulary it shares
                if f.name in self.shared:
                    count_shared(self.encoders[f.name], self._shared_columns(f.name, table), source)
                    continue
                if f.type == "image":
                    raise DataError(f"{source}: image feature {f.name!r} cannot be fitted in a streaming pass; "
                                    "train on a single file (read whole) instead")
                others = [table.column(g) for g in self.sharing[f.name]]
                self.encoders[f.name].partial_fit(table.column(f.name), source, *others)
        return self

    def finish(self, source: str) -> Preprocessor:
        """Fix the feature encoders from the chunks :meth:`partial_fit` saw (labels: :meth:`fit_labels`)."""
        for f in self.features:
            if f.vocabulary is not None or f.shared_with is not None:
                continue
            self.encoders[f.name].finish(source)
            for g in self.sharing[f.name] + self.shared.get(f.name, [])[1:]:
                self.encoders[g].load(self.encoders[f.name].state())
        return self

    def _shared_columns(self, root: str, table: pa.Table) -> list[tuple[Any, pa.ChunkedArray]]:
        """The encoder and column of every feature sharing ``root``'s vocabulary (``shared_with``)."""
        return [(self.encoders[g], table.column(g)) for g in self.shared[root]]

    @staticmethod
    def _check_trainable(task: Task, label: np.ndarray, mask: np.ndarray, inside: np.ndarray | None, source: str) -> None:
        columns = ", ".join(repr(c) for c in task.label_columns())
        if not mask.any():
            raise DataError(
                f"task {task.name!r}: {source}: label column {columns} holds no label in the training split "
                f"({len(mask)} rows); a task without labels cannot train"
            )
        if inside is None:
            return
        if not inside.any():
            raise DataError(
                f"task {task.name!r}: {source}: where {task.where!r} selects no row of the training split "
                f"({len(inside)} rows); a task without rows cannot train"
            )
        if not (mask & inside.reshape(inside.shape + (1,) * (mask.ndim - 1))).any():
            raise DataError(
                f"task {task.name!r}: {source}: no row selected by where {task.where!r} holds a label "
                f"in the training split; a task without labels cannot train"
            )

    def transform(self, table: pa.Table, source: str = "<table>", with_labels: bool = True) -> TensorTable:
        if not self.fitted:
            raise RuntimeError("Preprocessor.transform called before fit")
        self.check_columns(table, source, with_labels)
        table = self._complete(table)
        with rows_of_file(table):
            return self._transform(table, source, with_labels)

    def _transform(self, table: pa.Table, source: str, with_labels: bool) -> TensorTable:
        n = table.num_rows
        spec = self.input_spec()
        # numeric and categorical columns are written straight into one preallocated array each
        # (no per-column list + concatenate, which would hold the data twice); categorical ids are
        # int32, half the memory of int64 and enough for any vocabulary
        numeric = np.empty((n, spec.numeric_dim), dtype=np.float32) if spec.numeric_dim else None
        categorical = np.empty((n, len(spec.cardinalities)), dtype=np.int32) if spec.cardinalities else None
        out: dict[str, torch.Tensor] = {}
        num_col = cat_col = 0
        directory = source_directory(table)
        for f in self.features:
            if f.type == "image":  # uint8 [N, C, H, W]: the model scales, normalises and augments
                pixels = self.encoders[f.name].transform(table.column(f.name), source, directory=directory)
                out[f"dense:{f.name}"] = torch.from_numpy(pixels)
                continue
            arr = self.encoders[f.name].transform(table.column(f.name), source)
            if f.type == "numeric":
                numeric[:, num_col : num_col + arr.shape[1]] = arr
                num_col += arr.shape[1]
            elif f.type == "categorical":
                categorical[:, cat_col] = arr
                cat_col += 1
            elif f.type == "sequence":
                out[f"seq:{f.name}"] = torch.from_numpy(arr)
                if f.char_ngrams:
                    out[f"ngrams:{f.name}"] = torch.from_numpy(self.encoders[f.name].transform_ngrams(table.column(f.name), source))
            else:
                out[f"dense:{f.name}"] = torch.from_numpy(np.ascontiguousarray(arr))
        if numeric is not None:
            out["numeric"] = torch.from_numpy(numeric)
        if categorical is not None:
            out["categorical"] = torch.from_numpy(categorical)
        labels, masks, weights = {}, {}, {}
        if with_labels:
            cached = getattr(self, "_train_labels", None)
            parts = cached[2] if cached is not None and cached[0] is table and cached[1] == source else {}
            if parts:
                self._train_labels = None  # used once: do not hold the training labels twice
            for t in self.tasks:
                if t.name in parts:
                    label, mask, inside, weight = parts[t.name]
                    if inside is not None:
                        mask = mask & inside.reshape(inside.shape + (1,) * (mask.ndim - 1))
                else:
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
                if f.pooling != "mean":
                    spec.pooling[f.name] = f.pooling
                if f.target is not None:
                    spec.targets[f.name] = f.target
                spec.vocabularies[f.name] = enc.vocab
                if f.char_ngrams:
                    spec.ngrams[f.name] = enc.ngram_vocab_size
            elif f.type == "image":
                spec.dense[f.name] = list(enc.shape)  # [C, H, W]: the cnn encoder and columns read it
                spec.images[f.name] = enc.model_input()
            else:
                spec.dense[f.name] = list(enc.shape)
            if f.shared_with is not None:
                spec.shared[f.name] = f.shared_with
            group = self.shared.get(f.shared_with or f.name, [f.name])
            width = next((g.embedding_dim for g in self.features if g.name in group and g.embedding_dim), None)
            if width is not None:  # one width for a shared table, given on any of its features
                spec.embedding_dims[f.name] = width
        return spec

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [{"spec": f.to_dict(), "state": self.encoders[f.name].state()} for f in self.features],
            "tasks": [t.to_dict() for t in self.tasks],
            **({"optional_columns": self.optional_columns} if self.optional_columns else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        features = [FeatureSpec(**e["spec"]) for e in d["features"]]
        tasks = [Task(**t) for t in d["tasks"]]
        pre = cls(features, tasks)
        for f, e in zip(features, d["features"]):
            pre.encoders[f.name].load(e["state"])
        pre.optional_columns = list(d.get("optional_columns", []))
        pre.fitted = True
        return pre

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Preprocessor:
        return cls.from_dict(json.loads(Path(path).read_text()))
