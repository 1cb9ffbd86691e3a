"""Columnar in-memory data as tensors, and the batch type every model and loss sees.

A batch is an index slice of the table's tensors: one ``index_select`` per tensor, never a
per-row Python collation (that costs 5-20 ms per 1024-row batch in the libraries measured in
``shared/reference/performance.md``; slicing costs about 0.4 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Batch:
    """``features``: grouped feature tensors (see :class:`~polytask.data.schema.InputSpec`);
    ``labels``/``masks``/``weights``: per task (``masks`` False = no label for that row)."""

    features: dict[str, Tensor]
    labels: dict[str, Tensor] = field(default_factory=dict)
    masks: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return next(iter(self.features.values())).shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(d: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: v.to(device, non_blocking=non_blocking) for k, v in d.items()}

        return Batch(move(self.features), move(self.labels), move(self.masks), move(self.weights))

    def trim_tokens(self, feature: str, tasks: list[str]) -> Batch:
        """The batch with text ``feature``'s token axis cut to its longest row: ``seq:<feature>``
        ``[B, L]`` (left-aligned, 0-padded), ``ngrams:<feature>`` and the labels and masks of the
        token-level ``tasks`` that follow it (``[B, L, ...]``). Positions past every row's last
        token are padding (no label), so nothing the loss sees changes, while recurrent layers,
        classifiers and head scores run on ``L' <= L`` positions (most sentences are far shorter
        than ``max_len``). Unchanged when the feature is absent or already tight."""
        ids = self.features.get(f"seq:{feature}")
        if ids is None or ids.dim() != 2 or ids.shape[1] == 0:
            return self
        used = (ids != 0).any(0)
        length = int(used.nonzero().max()) + 1 if bool(used.any()) else 1
        if length == ids.shape[1]:
            return self
        features = dict(self.features)
        features[f"seq:{feature}"] = ids[:, :length]
        if f"ngrams:{feature}" in features:
            features[f"ngrams:{feature}"] = features[f"ngrams:{feature}"][:, :length]
        labels, masks = dict(self.labels), dict(self.masks)
        for t in tasks:
            if t in labels:
                labels[t] = labels[t][:, :length]
                masks[t] = masks[t][:, :length]
        return Batch(features, labels, masks, dict(self.weights))


class TensorTable:
    """Rows of encoded features and labels held as whole-column tensors."""

    def __init__(
        self,
        features: dict[str, Tensor],
        labels: dict[str, Tensor] | None = None,
        masks: dict[str, Tensor] | None = None,
        weights: dict[str, Tensor] | None = None,
    ) -> None:
        if not features:
            raise ValueError("a TensorTable needs at least one feature tensor")
        self.features = features
        self.labels = labels or {}
        self.masks = masks or {}
        self.weights = weights or {}
        sizes = {t.shape[0] for d in (self.features, self.labels, self.masks, self.weights) for t in d.values()}
        if len(sizes) != 1:
            raise ValueError(f"all columns of a TensorTable need the same number of rows, got {sorted(sizes)}")
        self.num_rows = sizes.pop()

    def __len__(self) -> int:
        return self.num_rows

    def _map(self, fn) -> Batch:
        return Batch(
            {k: fn(v) for k, v in self.features.items()},
            {k: fn(v) for k, v in self.labels.items()},
            {k: fn(v) for k, v in self.masks.items()},
            {k: fn(v) for k, v in self.weights.items()},
        )

    def take(self, index: Tensor) -> Batch:
        """Rows at ``index`` (a 1-D long tensor), gathered column by column. The index moves to the
        table's device first (a table resident on a GPU, shuffled by the loader's CPU generator)."""
        device = next(iter(self.features.values())).device
        if index.device != device:
            index = index.to(device, non_blocking=True)
        return self._map(lambda t: t.index_select(0, index))

    def slice(self, start: int, stop: int) -> Batch:
        """Contiguous rows as views (no copy): used for evaluation and prediction."""
        return self._map(lambda t: t[start:stop])

    def all(self) -> Batch:
        return self.slice(0, self.num_rows)

    def to(self, device: torch.device | str) -> TensorTable:
        b = self.all().to(device)
        return TensorTable(b.features, b.labels, b.masks, b.weights)
