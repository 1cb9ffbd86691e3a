"""The ``tabular`` input encoder: numeric values, categorical and sequence embeddings, flattened
dense tensors, concatenated into one vector per row (the default for every architecture).

All categorical fields (of one width) share one embedding table with per-field offsets
(:class:`~polytask.nn.embedding.FusedEmbedding`), so a batch needs one gather instead of one per field.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.encoders.base import InputEncoder
from polytask.nn.embedding import FusedEmbedding, module_key
from polytask.nn.target_attention import TargetAttention
from polytask.registry import ENCODERS


@ENCODERS.register("tabular")
class TabularInput(InputEncoder):
    """Numeric values, categorical embeddings, pooled sequence embeddings (each feature's
    ``pooling``: mean, sum or max over its items, or attention on its ``target``'s embedding;
    padding left out) and flattened dense features, concatenated into ``[B, out_dim]``.

    Features that share a vocabulary (``shared_with``) share one embedding table: a categorical
    feature's field of the fused table when the group has one (a sequence reads it with its ids
    minus one: sequence id ``k + 1`` is categorical id ``k``, and padding is masked out), else the
    first sequence's table.

    Args:
        spec: what the preprocessor produced (see :class:`~polytask.data.schema.InputSpec`).
        embedding_dim: width of every categorical and sequence embedding without an
            ``embedding_dim`` of its own (``spec.embedding_dims``).
    """

    def __init__(self, spec: InputSpec, embedding_dim: int = 4) -> None:
        super().__init__()
        if (spec.cardinalities or spec.sequences) and embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self.spec = spec

        def width(name: str | None) -> int:
            return spec.embedding_dims.get(name, embedding_dim) if name is not None else embedding_dim

        names: list[str | None] = [*spec.categorical_names]
        names += [None] * (len(spec.cardinalities) - len(names))  # a spec built by hand may leave names out
        owner_field: dict[str, int] = {}  # a shared table's name -> the categorical field holding it
        tables = [owner_field.setdefault(spec.shared.get(n, n), i) if n is not None else i for i, n in enumerate(names)]
        self.categorical = (
            FusedEmbedding(spec.cardinalities, embedding_dim, [width(n) for n in names], tables) if spec.cardinalities else None
        )
        self._names, self._owner_field = names, owner_field
        #: sequence -> the categorical field whose rows it reads, or -> its embedding module's key
        self._sequence_fields: dict[str, int] = {}
        self._sequence_keys: dict[str, str] = {}
        tables_of_sequences: dict[str, str] = {}  # a shared table's name -> the sequence holding it
        modules: dict[str, nn.Module] = {}
        for name, size in spec.sequences.items():
            table = spec.shared.get(name, name)
            if table in owner_field:
                field = owner_field[table]
                if size != spec.cardinalities[field] + 1:
                    raise ValueError(f"sequence {name!r} shares {names[field]!r}'s vocabulary but has {size} ids, not "
                                     f"{spec.cardinalities[field] + 1}")
                self._sequence_fields[name] = field
                continue
            key = module_key(tables_of_sequences.setdefault(table, name))
            if key not in modules:
                modules[key] = nn.Embedding(size, width(name), padding_idx=0)
            elif modules[key].num_embeddings != size:
                raise ValueError(f"sequences sharing one vocabulary have {modules[key].num_embeddings} and {size} ids")
            self._sequence_keys[name] = key
        self.sequences = nn.ModuleDict(modules)
        #: sequence pooled by attention -> the categorical field of its target
        self._targets: dict[str, int] = {}
        attention = {}
        for name, target in spec.targets.items():
            if name not in spec.sequences:  # a part of the spec without this sequence (another encoder reads it)
                continue
            if target not in names:
                raise ValueError(f"sequence {name!r} attends from {target!r}, which is not a categorical feature of this input")
            self._targets[name] = names.index(target)
            attention[module_key(name)] = TargetAttention(width(name))
        self.attention = nn.ModuleDict(attention)
        dense = sum(int(torch.tensor(s).prod()) for s in spec.dense.values())
        self.out_dim = (
            spec.numeric_dim
            + (self.categorical.out_dim if self.categorical is not None else 0)
            + sum(width(name) for name in spec.sequences)
            + dense
        )
        if self.out_dim == 0:
            raise ValueError("the model has no input features")

    def _item_field(self, name: str) -> int | None:
        """The categorical field holding the table sequence ``name`` shares, if this encoder has it."""
        if self.categorical is None:
            return None
        return self._owner_field.get(self.spec.shared.get(name, name))

    def item_width(self, name: str) -> int | None:
        """The width of a categorical feature's table that sequence ``name`` (read by another part
        of the model: DUPN's behaviour sequence) shares through ``shared_with``, else None."""
        field = self._item_field(name)
        if field is None:
            return None
        start, end = self.categorical.columns[field]
        return end - start

    def item_embeddings(self, name: str, ids: Tensor) -> Tensor:
        """Sequence ids ``[*S]`` of ``name`` -> ``[*S, width]`` rows of the shared categorical table
        (categorical id = sequence id - 1; padding, id 0, gives zeros)."""
        field = self._item_field(name)
        if field is None:
            return super().item_embeddings(name, ids)
        rows = self.categorical.rows(field, (ids - 1).clamp_min(0))
        return rows * (ids > 0).unsqueeze(-1).to(rows.dtype)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        parts: list[Tensor] = []
        if self.spec.numeric_dim:
            parts.append(features["numeric"])
        fields = None
        if self.categorical is not None:
            fields = self.categorical(features["categorical"])
            parts.append(fields)
        for name in self.spec.sequences:
            ids = features[f"seq:{name}"]
            if name in self._sequence_fields:  # a categorical feature's table: categorical id = sequence id - 1
                items = self.categorical.rows(self._sequence_fields[name], (ids - 1).clamp_min(0))
            else:
                items = self.sequences[self._sequence_keys[name]](ids)
            if name in self._targets:
                start, end = self.categorical.columns[self._targets[name]]
                parts.append(self.attention[module_key(name)](items, fields[:, start:end], ids > 0))
            else:
                parts.append(pool(items, ids > 0, self.spec.pooling.get(name, "mean")))
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
