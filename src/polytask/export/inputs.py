"""The exported model's inputs: one tensor per feature group, in a fixed order.

A run's preprocessor turns a table into grouped tensors (see :mod:`polytask.data.preprocessor`);
the exported model takes the same groups as separate, named, positional inputs, in this order:

1. ``numeric``: float32 ``[batch, D]``, every numeric column's scaled value (and its missing
   indicator, when it has one), in feature order;
2. ``categorical``: int32 ``[batch, F]``, one id per categorical column, in feature order;
3. then, per remaining feature in declaration order: ``seq:<name>`` int64 ``[batch, max_len]``
   (and ``ngrams:<name>`` int32 ``[batch, max_len, max_ngrams]`` when it has ``char_ngrams``),
   ``dense:<name>`` float32 ``[batch, *shape]``, or for an image ``dense:<name>`` uint8
   ``[batch, C, H, W]``.

A group that is empty (no numeric column) is left out. The key (``seq:words``) is what the model
reads; the input's name replaces every character other than a letter, digit or ``_`` by ``_``
(``seq_words``), since some ONNX tools take names as identifiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from polytask.data.preprocessor import Preprocessor
    from polytask.data.schema import InputSpec


@dataclass(frozen=True)
class InputGroup:
    """One input of the exported model."""

    #: the key of the features dict the model reads (``numeric``, ``seq:words``, ...)
    key: str
    #: the exported input's name (the key made an identifier)
    name: str
    #: numpy dtype name
    dtype: str
    #: shape of one row (the batch axis excluded)
    shape: tuple[int, ...]
    #: the input columns it is made of
    features: tuple[str, ...]


def input_name(key: str) -> str:
    """``seq:words`` -> ``seq_words``: letters, digits and ``_`` kept, anything else ``_``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return name if name and not name[0].isdigit() else f"_{name}"


def input_groups(pre: Preprocessor) -> list[InputGroup]:
    """The exported model's inputs for a fitted preprocessor, in the module docstring's order."""
    numeric: list[str] = []
    width = 0
    categorical: list[str] = []
    rest: list[tuple[str, str, tuple[int, ...], str]] = []
    for f in pre.features:
        enc = pre.encoders[f.name]
        if f.type == "numeric":
            numeric.append(f.name)
            width += enc.width
        elif f.type == "categorical":
            categorical.append(f.name)
        elif f.type == "sequence":
            rest.append((f"seq:{f.name}", "int64", (f.max_len,), f.name))
            if f.char_ngrams:
                rest.append((f"ngrams:{f.name}", "int32", (f.max_len, f.max_ngrams), f.name))
        elif f.type == "image":
            rest.append((f"dense:{f.name}", "uint8", tuple(enc.shape), f.name))
        else:
            rest.append((f"dense:{f.name}", "float32", tuple(enc.shape), f.name))
    groups = []
    if numeric:
        groups.append(("numeric", "float32", (width,), tuple(numeric)))
    if categorical:
        groups.append(("categorical", "int32", (len(categorical),), tuple(categorical)))
    groups += [(key, dtype, shape, (name,)) for key, dtype, shape, name in rest]
    out: list[InputGroup] = []
    taken: set[str] = set()
    for key, dtype, shape, features in groups:
        name = base = input_name(key)
        i = 1
        while name in taken:  # "seq:a b" and "seq:a_b" would both be seq_a_b
            i += 1
            name = f"{base}_{i}"
        taken.add(name)
        out.append(InputGroup(key, name, dtype, tuple(int(s) for s in shape), features))
    return out


def example_inputs(groups: list[InputGroup], spec: InputSpec, rows: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of ``rows`` rows that the model accepts: ids inside each vocabulary,
    sequences left-aligned with random lengths (the first row full, the second empty), numbers
    and pixels at random. Used to trace the model and to check the exported one against it."""
    import torch

    g = torch.Generator().manual_seed(seed)
    dtypes = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8}
    lengths: dict[str, torch.Tensor] = {}
    out = []
    for grp in groups:
        dtype = dtypes[grp.dtype]
        kind, _, name = grp.key.partition(":")
        if kind == "numeric" or (kind == "dense" and dtype == torch.float32):
            x = torch.randn(rows, *grp.shape, generator=g)
        elif kind == "dense":
            x = torch.randint(0, 256, (rows, *grp.shape), generator=g, dtype=torch.uint8)
        elif kind == "categorical":
            cards = torch.tensor(spec.cardinalities, dtype=torch.float64)
            x = (torch.rand(rows, len(spec.cardinalities), generator=g, dtype=torch.float64) * cards).long()
        elif kind == "seq":
            width = grp.shape[0]
            n = torch.randint(0, width + 1, (rows,), generator=g)
            n[0] = width
            if rows > 1:
                n[1] = 0
            lengths[name] = n
            ids = torch.randint(1, max(spec.sequences[name], 2), (rows, width), generator=g)
            x = torch.where(torch.arange(width)[None, :] < n[:, None], ids, torch.zeros_like(ids))
        else:  # ngrams: a prefix of each kept token's slots
            width, slots = grp.shape
            ids = torch.randint(1, max(spec.ngrams[name], 2), (rows, width, slots), generator=g)
            used = torch.randint(1, slots + 1, (rows, width, 1), generator=g)
            present = (torch.arange(width)[None, :] < lengths[name][:, None])[..., None]
            x = torch.where(present & (torch.arange(slots)[None, None, :] < used), ids, torch.zeros_like(ids))
        out.append(x.to(dtype))
    return tuple(out)
