"""Embedding blocks: many categorical fields in one table (:class:`FusedEmbedding`).

All categorical fields of one width share one embedding table with per-field offsets, so a batch
needs one gather (per distinct width) instead of one per field; its backward accumulates with
``index_add_``, which on CPU is several times faster than the built-in embedding backward at these
sizes (``shared/reference/performance.md``).
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


def gather_rows(weight: Tensor, index: Tensor) -> Tensor:
    """``weight[index]`` for a 1-D ``index``: by :class:`_GatherRows` while training (int64 indices:
    CPU ``index_add_`` with int32 ones is several times slower), by a plain ``index_select`` for
    inference (no autograd Function overhead)."""
    if torch.is_grad_enabled() and weight.requires_grad:
        return _GatherRows.apply(weight, index.long())
    return weight.index_select(0, index)


class FusedEmbedding(nn.Module):
    """Embeddings of several categorical fields: ``[B, F]`` ids -> ``[B, sum of the widths]``,
    each field's columns in field order.

    Fields of one width share one table with per-field offsets, so a batch needs one gather per
    distinct width: one when every field has the model's width (the common case). A field may
    use another field's rows instead of its own (``shared_with``).

    Args:
        cardinalities: the number of ids of each field.
        dim: the width of every field (unless ``dims`` is given).
        dims: one width per field (a feature's own ``embedding_dim``); None: ``dim`` for all.
        tables: per field, the index of the field whose rows it uses: its own index, or an
            earlier field's of the same cardinality and width. None: every field its own rows.
    """

    def __init__(self, cardinalities: list[int], dim: int, dims: list[int] | None = None,
                 tables: list[int] | None = None) -> None:
        super().__init__()
        n = len(cardinalities)
        widths = [dim] * n if dims is None else [int(d) for d in dims]
        owners = list(range(n)) if tables is None else list(tables)
        if len(widths) != n or len(owners) != n:
            raise ValueError(f"FusedEmbedding: {n} fields but {len(widths)} widths and {len(owners)} tables")
        if any(w < 1 for w in widths) or (not n and dim < 1):
            raise ValueError(f"embedding_dim must be >= 1, got {min(widths, default=dim)}")
        for i, j in enumerate(owners):
            if not (0 <= j <= i and owners[j] == j and cardinalities[j] == cardinalities[i] and widths[j] == widths[i]):
                raise ValueError(f"FusedEmbedding: field {i} cannot use field {j}'s rows (an earlier field with its own "
                                 f"rows, the same cardinality and width)")
        self.num_fields, self.dim, self.dims = n, dim, widths
        self.out_dim = sum(widths)
        #: the columns of each field in the output: ``[start, end)``
        self.columns = [(sum(widths[:i]), sum(widths[: i + 1])) for i in range(n)]
        #: field -> (index of its width's table, its offset in that table)
        self.place: list[tuple[int, int]] = [(0, 0)] * n
        distinct = list(dict.fromkeys(widths))
        for g, width in enumerate(distinct):
            fields = [i for i in range(n) if widths[i] == width]
            rows = 0
            for i in fields:
                if owners[i] == i:
                    self.place[i] = (g, rows)
                    rows += cardinalities[i]
                else:
                    self.place[i] = self.place[owners[i]]
            # int32, like the ids the preprocessor stores: adding them needs no type promotion, and
            # index_select / index_add_ take int32 indices
            offsets = torch.tensor([self.place[i][1] for i in fields], dtype=torch.int32)
            weight = nn.Parameter(torch.empty(rows, width))
            nn.init.normal_(weight, std=0.1)
            suffix = "" if g == 0 else f"_{g}"  # one width (the common case): names as they always were
            self.register_parameter("weight" + suffix, weight)
            self.register_buffer("offsets" + suffix, offsets, persistent=False)
            self.register_buffer("fields" + suffix, torch.tensor(fields, dtype=torch.long), persistent=False)
        if not n:
            self.register_parameter("weight", nn.Parameter(torch.empty(0, dim)))
            self.register_buffer("offsets", torch.zeros(0, dtype=torch.int32), persistent=False)
        self.num_tables = max(len(distinct), 1)
        grouped, start, at = [i for width in distinct for i in range(n) if widths[i] == width], 0, {}
        for i in grouped:  # where each field's columns land when the tables' outputs are concatenated
            at[i], start = start, start + widths[i]
        order = [at[i] + c for i in range(n) for c in range(widths[i])]
        # the tables' columns back in field order (None: already in order, as with one width)
        self.register_buffer("order", None if order == list(range(self.out_dim)) else torch.tensor(order),
                             persistent=False)

    def table(self, g: int) -> tuple[Tensor, Tensor, Tensor]:
        """The ``g``-th width's weight, offsets and field indices."""
        suffix = "" if g == 0 else f"_{g}"
        return getattr(self, "weight" + suffix), getattr(self, "offsets" + suffix), getattr(self, "fields" + suffix)

    def forward(self, ids: Tensor) -> Tensor:
        if self.num_tables == 1:  # one gather
            index = (ids + self.offsets).reshape(-1)
            return gather_rows(self.weight, index).view(ids.shape[0], self.out_dim)
        parts = []
        for g in range(self.num_tables):
            weight, offsets, fields = self.table(g)
            index = (ids.index_select(1, fields) + offsets).reshape(-1)
            parts.append(gather_rows(weight, index).view(ids.shape[0], -1))
        out = torch.cat(parts, dim=1)
        return out if self.order is None else out.index_select(1, self.order)

    def rows(self, field: int, ids: Tensor) -> Tensor:
        """Field ``field``'s embeddings of ``ids`` (any shape) -> ``[*ids.shape, width]``: how a
        sequence feature sharing this field's table reads it."""
        g, offset = self.place[field]
        weight = self.table(g)[0]
        return gather_rows(weight, (ids + offset).reshape(-1)).view(*ids.shape, weight.shape[1])


def module_key(name: str) -> str:
    """A feature name as a submodule key: unchanged when ``nn.ModuleDict`` accepts it (so saved
    parameter names stay as they were), else ``"feature_<hex of its UTF-8>"``: names with ``.``,
    empty names and names of ``ModuleDict`` attributes (``items``, ``keys``, ...) are not accepted."""
    if name and "." not in name and not hasattr(nn.ModuleDict, name) and not name.startswith("feature_"):
        return name
    return "feature_" + name.encode("utf-8").hex()
