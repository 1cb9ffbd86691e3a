"""A split of Parquet row groups used as a whole table is used: :class:`StreamedSplit`.

Evaluation needs every prediction of a split at once (AUC is not an average over batches), but
only the predictions and the labels, which are small; the features are streamed. A streamed split
therefore holds its labels, masks and weights (read from the task columns alone) and hands out its
feature batches in file order through :meth:`StreamedSplit.in_order`, which
:func:`polytask.data.loader.in_order` asks for. The training split is one too: ``len()`` is its
row count, and :meth:`StreamedSplit.stream` gives the training batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask.data.preprocessor import Preprocessor
from polytask.data.stream_files import ParquetFiles
from polytask.data.stream_fit import task_column_names
from polytask.data.streaming import DEFAULT_READ_ROWS, ParquetStream


class StreamedSplit:
    """The rows of ``files`` (their row groups), encoded by ``preprocessor`` as they are read."""

    def __init__(self, files: ParquetFiles, preprocessor: Preprocessor, *, read_rows: int = DEFAULT_READ_ROWS) -> None:
        self.files, self.pre, self.read_rows = files, preprocessor, read_rows
        self._labels: tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]] | None = None

    @property
    def num_rows(self) -> int:
        return self.files.num_rows

    def __len__(self) -> int:
        return self.num_rows

    def stream(self, batch_size: int, **options) -> ParquetStream:
        """Training batches (see :class:`ParquetStream` for ``options``: shuffle_buffer, seed, rank, ...)."""
        return ParquetStream(self.files, self.pre, batch_size, read_rows=self.read_rows, **options)

    def in_order(self, batch_size: int) -> ParquetStream:
        """Feature batches of every row in file order, once (evaluation, prediction)."""
        return ParquetStream(self.files, self.pre, batch_size, shuffle_buffer=0, read_rows=self.read_rows,
                             with_labels=False)

    def _read_labels(self) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        if self._labels is None:
            columns = task_column_names(self.pre)
            parts: dict[str, list] = {t.name: [] for t in self.pre.tasks}
            for unit in self.files.units:
                table = self.pre._complete(self.files.read(unit, columns))
                for t in self.pre.tasks:
                    parts[t.name].append(self.pre.label_encoders[t.name].encode(table, self.files.source(unit)))
            labels, masks, weights = {}, {}, {}
            for name, chunks in parts.items():
                labels[name] = torch.from_numpy(np.concatenate([c[0] for c in chunks]))
                masks[name] = torch.from_numpy(np.concatenate([c[1] for c in chunks]))
                if chunks[0][2] is not None:
                    weights[name] = torch.from_numpy(np.concatenate([c[2] for c in chunks]))
            self._labels = labels, masks, weights
        return self._labels

    @property
    def labels(self) -> dict[str, Tensor]:
        return self._read_labels()[0]

    @property
    def masks(self) -> dict[str, Tensor]:
        return self._read_labels()[1]

    @property
    def weights(self) -> dict[str, Tensor]:
        return self._read_labels()[2]
