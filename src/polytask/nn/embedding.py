"""Embedding blocks: many categorical fields in one table (:class:`FusedEmbedding`).

All categorical fields share one embedding table with per-field offsets, so a batch needs one
gather instead of one per field; its backward accumulates with ``index_add_``, which on CPU is
several times faster than the built-in embedding backward at these sizes
(``shared/reference/performance.md``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
        if dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {dim}")
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
