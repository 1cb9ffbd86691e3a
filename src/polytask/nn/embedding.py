"""Input encoders: encoded feature tensors -> one dense vector per row.

All categorical fields share one embedding table with per-field offsets, so a batch needs one
gather instead of one per field; its backward accumulates with ``index_add_``, which on CPU is
several times faster than the built-in embedding backward at these sizes
(``shared/reference/performance.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec


class _GatherRows(torch.autograd.Function):
    """``weight[index]`` with a dense ``index_add_`` gradient."""

    @staticmethod
    def forward(ctx, weight: Tensor, index: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(index)
        ctx.num_rows = weight.shape[0]
        return weight.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (index,) = ctx.saved_tensors
        out = grad.new_zeros((ctx.num_rows, grad.shape[1]))
        return out.index_add_(0, index, grad.contiguous()), None


class FusedEmbedding(nn.Module):
    """Embeddings of several categorical fields in one table: ``[B, F]`` ids -> ``[B, F * dim]``."""

    def __init__(self, cardinalities: list[int], dim: int) -> None:
        super().__init__()
        self.num_fields, self.dim = len(cardinalities), dim
        # int32, like the ids the preprocessor stores: adding them needs no type promotion, and
        # index_select / index_add_ take int32 indices
        offsets = torch.zeros(len(cardinalities), dtype=torch.int32)
        if cardinalities:
            offsets[1:] = torch.tensor(cardinalities[:-1]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.weight = nn.Parameter(torch.empty(int(sum(cardinalities)), dim))
        nn.init.normal_(self.weight, std=0.1)
        self.out_dim = self.num_fields * dim

    def forward(self, ids: Tensor) -> Tensor:
        index = (ids + self.offsets).reshape(-1)
        if torch.is_grad_enabled() and self.weight.requires_grad:
            # int64 for training: CPU index_add_ with int32 indices is several times slower
            rows = _GatherRows.apply(self.weight, index.long())
        else:  # inference: skip the autograd Function's overhead
            rows = self.weight.index_select(0, index)
        return rows.view(ids.shape[0], self.out_dim)


def module_key(name: str) -> str:
    """A feature name as a submodule key: unchanged when ``nn.ModuleDict`` accepts it (so saved
    parameter names stay as they were), else ``"feature_<hex of its UTF-8>"``: names with ``.``,
    empty names and names of ``ModuleDict`` attributes (``items``, ``keys``, ...) are not accepted."""
    if name and "." not in name and not hasattr(nn.ModuleDict, name) and not name.startswith("feature_"):
        return name
    return "feature_" + name.encode("utf-8").hex()


class TabularInput(nn.Module):
    """Numeric values, categorical embeddings, mean-pooled sequence embeddings and flattened dense
    features, concatenated into ``[B, out_dim]``.

    Args:
        spec: what the preprocessor produced (see :class:`~polytask.data.schema.InputSpec`).
        embedding_dim: width of every categorical and sequence embedding.
    """

    def __init__(self, spec: InputSpec, embedding_dim: int = 4) -> None:
        super().__init__()
        self.spec = spec
        self.categorical = FusedEmbedding(spec.cardinalities, embedding_dim) if spec.cardinalities else None
        self.sequences = nn.ModuleDict(
            {module_key(n): nn.Embedding(size, embedding_dim, padding_idx=0) for n, size in spec.sequences.items()}
        )
        self._sequence_keys = {name: module_key(name) for name in spec.sequences}
        dense = sum(int(torch.tensor(s).prod()) for s in spec.dense.values())
        self.out_dim = (
            spec.numeric_dim
            + (self.categorical.out_dim if self.categorical is not None else 0)
            + embedding_dim * len(spec.sequences)
            + dense
        )
        if self.out_dim == 0:
            raise ValueError("the model has no input features")

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        parts: list[Tensor] = []
        if self.spec.numeric_dim:
            parts.append(features["numeric"])
        if self.categorical is not None:
            parts.append(self.categorical(features["categorical"]))
        for name, key in self._sequence_keys.items():
            emb = self.sequences[key]
            ids = features[f"seq:{name}"]
            present = (ids > 0).unsqueeze(-1).to(emb.weight.dtype)
            parts.append((emb(ids) * present).sum(1) / present.sum(1).clamp_min(1.0))
        for name in self.spec.dense:
            x = features[f"dense:{name}"]
            parts.append(x.reshape(x.shape[0], -1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class PerTaskInputs(nn.ModuleList):
    """One input encoder per task (for structures where tasks share no embeddings):
    ``features`` -> ``[T, B, out_dim]``. Indexable like the list of encoders it is.

    ``encoder``/``encoder_params`` choose the encoder as in :func:`polytask.nn.inputs.make_input`
    (default: a :class:`TabularInput` per task)."""

    def __init__(
        self,
        spec: InputSpec,
        num_tasks: int,
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: Mapping[str, Any] | None = None,
    ) -> None:
        from polytask.nn.inputs import make_input  # inputs imports this module

        super().__init__(
            make_input(spec, encoder, embedding_dim=embedding_dim, params=encoder_params) for _ in range(num_tasks)
        )
        self.out_dim = self[0].out_dim

    def __getitem__(self, idx):  # a slice is a plain list of encoders
        if isinstance(idx, slice):
            return nn.ModuleList(list(self._modules.values())[idx])
        return super().__getitem__(idx)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return torch.stack([encoder(features) for encoder in self])
