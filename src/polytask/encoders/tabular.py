"""The ``tabular`` input encoder: numeric values, categorical and sequence embeddings, flattened
dense tensors, concatenated into one vector per row (the default for every architecture).

All categorical fields share one embedding table with per-field offsets
(:class:`~polytask.nn.embedding.FusedEmbedding`), so a batch needs one gather instead of one per field.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.encoders.base import InputEncoder
from polytask.nn.embedding import FusedEmbedding, module_key
from polytask.registry import ENCODERS


@ENCODERS.register("tabular")
class TabularInput(InputEncoder):
    """Numeric values, categorical embeddings, pooled sequence embeddings (each feature's
    ``pooling``: mean, sum or max over its items, padding left out) and flattened dense features,
    concatenated into ``[B, out_dim]``.

    Args:
        spec: what the preprocessor produced (see :class:`~polytask.data.schema.InputSpec`).
        embedding_dim: width of every categorical and sequence embedding.
    """

    def __init__(self, spec: InputSpec, embedding_dim: int = 4) -> None:
        super().__init__()
        if (spec.cardinalities or spec.sequences) and embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
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
            parts.append(pool(emb(ids), ids > 0, self.spec.pooling.get(name, "mean")))
        for name in self.spec.dense:
            x = features[f"dense:{name}"]
            parts.append(x.reshape(x.shape[0], -1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def pool(items: Tensor, present: Tensor, how: str) -> Tensor:
    """``[B, L, D]`` item embeddings -> ``[B, D]`` over the positions where ``present`` ``[B, L]``
    is True: their ``mean``, ``sum`` or per-dimension ``max``; a row with no item gives zeros."""
    mask = present.unsqueeze(-1)
    if how == "max":
        filled = items.masked_fill(~mask, float("-inf")).amax(1)
        return torch.where(present.any(1, keepdim=True), filled, torch.zeros_like(filled))
    total = (items * mask.to(items.dtype)).sum(1)
    if how == "sum":
        return total
    return total / mask.sum(1).clamp_min(1).to(items.dtype)


def rest_input(spec: InputSpec, embedding_dim: int) -> TabularInput | None:
    """A :class:`TabularInput` over ``spec`` (the features an encoder does not read itself), or
    None when ``spec`` declares no feature: encoders over one image or text feature concatenate
    it so that no declared feature is silently dropped."""
    if spec.numeric_dim or spec.cardinalities or spec.sequences or spec.dense:
        return TabularInput(spec, embedding_dim)
    return None
