"""The column-family contract: T per-task networks of identical shape, run side by side.

Sharing structures that act *between* the layers of per-task networks (cross-stitch units,
sluice subspaces, soft sharing's parameter distance, DRN-style priors) are written against this
contract, so they work for every registered family (``mlp``, ``cnn``, ``lstm``, ...):

* :meth:`ColumnFamily.stem` ``features -> h0``, the per-task input ``[T, B, ...]``;
* ``layers`` (an ``nn.ModuleList``), run one at a time by :meth:`ColumnFamily.run_layer`:
  layer ``i`` maps ``[T, B, ...]`` with ``widths[i-1]`` channels on ``channel_dim`` to the same
  layout with ``widths[i]`` channels, parameters stacked on (or stackable along) a task axis;
* ``channel_dim``: the axis of ``h`` that per-channel units mix (2 for ``[T, B, C]`` and
  ``[T, B, C, H, W]``; the last axis for ``[T, B, L, C]``);
* :meth:`ColumnFamily.read_out` ``(h, features) -> [T, N, out_dim]`` rows for the task heads, in
  the row layout of :mod:`polytask.encoders.base` (``position_feature`` says which);
* :meth:`ColumnFamily.layer_weights` ``i -> [T, D1, D2]``, layer ``i``'s weight as one matrix per
  task (inputs x outputs, output units grouped by channel), and
  :meth:`ColumnFamily.stacked_parameters`, every parameter stacked ``[T, ...]``.

A family is registered in :data:`polytask.registry.COLUMNS` and built by :func:`make_columns` from
``(spec, num_tasks, hidden, *, embedding_dim, encoder, encoder_params, act, dropout, **own)``;
its own settings are the models' ``column_params``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.encoders.base import PerTaskInputs, check_task_levels
from polytask.errors import ConfigError
from polytask.params import validate_params

if TYPE_CHECKING:
    from polytask.models.base import MultiTaskModel

#: constructor arguments every family takes; anything else is the family's own ``column_params``
COMMON_ARGS = ("spec", "num_tasks", "hidden", "embedding_dim", "encoder", "encoder_params", "act", "dropout")


class ColumnFamily(nn.Module):
    """Base class of registered column families (see the module docstring for the contract)."""

    #: the per-task layers, ``len(widths)`` of them
    layers: nn.ModuleList
    #: the axis of a layer output ``[T, B, ...]`` that holds its channels
    channel_dim: int = 2
    #: channels after each layer
    widths: list[int]
    #: width of the rows :meth:`read_out` returns
    out_dim: int
    #: the text feature whose token positions the rows follow (None: one row per example)
    position_feature: str | None = None
    #: whether the stem reads through an input encoder (``encoder``/``encoder_params``); a family
    #: that reads its raw input feature itself sets False and is refused any other than ``tabular``
    takes_encoder: bool = True

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks

    # -- the contract ---------------------------------------------------------------------------
    def stem(self, features: Mapping[str, Tensor]) -> Tensor:
        """The per-task input ``[T, B, ...]`` of layer 0."""
        raise NotImplementedError

    def run_layer(self, i: int, h: Tensor, features: Mapping[str, Tensor]) -> Tensor:
        """Layer ``i`` of every column (``features`` for families whose layers need more than
        ``h``, e.g. the valid lengths of a sequence)."""
        return self.layers[i](h)

    def read_out(self, h: Tensor, features: Mapping[str, Tensor]) -> Tensor:
        """The last layer's output -> ``[T, N, out_dim]`` rows for the task heads."""
        raise NotImplementedError

    def layer_weights(self, i: int) -> Tensor:
        """Layer ``i``'s weight as one ``[D1, D2]`` matrix per task: ``[T, D1, D2]``."""
        raise NotImplementedError

    def stacked_parameters(self) -> list[Tensor]:
        """Every parameter of the columns (inputs included), each ``[T, ...]`` with the tasks'
        corresponding entries stacked on the first axis."""
        raise NotImplementedError

    def align(self, h: Tensor, i: int) -> Tensor:
        """Layer ``i``'s output in the shape of the last layer's (for sums over layers, e.g. the
        sluice beta); the default accepts only outputs that already have it."""
        if i != len(self.layers) - 1 and self.widths[i] != self.widths[-1]:
            raise ValueError(f"layer {i} has {self.widths[i]} channels, the last layer {self.widths[-1]}")
        return h

    def forward(self, x: Mapping[str, Tensor] | Tensor) -> Tensor:
        """Independent columns: features -> stem, every layer, read-out (``[T, N, out_dim]``).
        Given a tensor instead, it is taken as the stem's output and only the layers run (the
        ``[T, B, in] -> [T, B, out]`` interface of :class:`~polytask.nn.columns.TaskColumns`; for
        families whose layers read nothing but ``h``)."""
        features: Mapping[str, Tensor] = {} if isinstance(x, Tensor) else x
        h = x if isinstance(x, Tensor) else self.stem(features)
        for i in range(len(self.layers)):
            h = self.run_layer(i, h, features)
        return h if isinstance(x, Tensor) else self.read_out(h, features)

    # -- keeping a model's parameter names --------------------------------------------------------
    def release_inputs(self) -> nn.Module | None:
        """Hand the family's input encoders (its ``inputs`` submodule, if it has one) to the caller:
        the family keeps using them but no longer registers them, so a model registers them as its
        own ``inputs`` (the state-dict names models had before column families: ``inputs.0.*``).
        Returns None for a family without one."""
        module = self._modules.pop("inputs", None)
        if module is not None:
            self.__dict__["inputs"] = module  # a plain reference: the model owns the parameters
        return module


def stack_modules(modules: Iterable[nn.Module]) -> list[Tensor]:
    """The corresponding parameters of identically shaped modules (one per task), each stacked
    ``[T, ...]`` (differentiable: penalties on the stack reach every module)."""
    return [torch.stack(group) for group in zip(*(list(m.parameters()) for m in modules))]


def per_task_rest(spec: InputSpec, num_tasks: int, embedding_dim: int) -> PerTaskInputs | None:
    """One ``tabular`` input per task over ``spec`` (the features a family does not read itself,
    concatenated to its rows so none is silently dropped), or None when ``spec`` has none."""
    if spec.numeric_dim or spec.cardinalities or spec.sequences or spec.dense:
        return PerTaskInputs(spec, num_tasks, embedding_dim)
    return None


def refuse_encoder(family: str, encoder: str, encoder_params: Mapping[str, Any] | None) -> None:
    """Families that read their raw inputs themselves take no input encoder: ValueError otherwise."""
    if encoder != "tabular" or encoder_params:
        raise ValueError(
            f"model.encoder: column family {family!r} reads its input feature itself and takes no input encoder "
            f"(got encoder {encoder!r}, encoder_params {dict(encoder_params or {})}); use columns: mlp for encoders"
        )


def make_columns(
    name: str,
    spec: InputSpec,
    num_tasks: int,
    hidden: Sequence[int],
    *,
    embedding_dim: int = 4,
    encoder: str = "tabular",
    encoder_params: Mapping[str, Any] | None = None,
    act: str = "relu",
    dropout: float = 0.0,
    params: Mapping[str, Any] | None = None,
) -> ColumnFamily:
    """Build the registered column family ``name``; ``params`` are its own settings (an unknown
    key or a wrong type is a ConfigError naming ``model.column_params.<key>``)."""
    from polytask.registry import COLUMNS

    try:
        cls = COLUMNS.get(name)
    except KeyError:
        known = ", ".join(COLUMNS.names())
        raise ConfigError(f"model.columns: unknown column family {name!r}; registered: {known}") from None
    checked = validate_params(cls, params or {}, where="model.column_params", skip=COMMON_ARGS)
    if not cls.takes_encoder:
        refuse_encoder(name, encoder, encoder_params)
    return cls(spec, num_tasks, list(hidden), embedding_dim=embedding_dim, encoder=encoder,
               encoder_params=dict(encoder_params or {}), act=act, dropout=dropout, **checked)


def build_columns(model: MultiTaskModel, columns: str, hidden: Sequence[int], *, encoder: str = "tabular",
                  **kwargs: Any) -> ColumnFamily:
    """:func:`make_columns` for ``model``'s inputs and tasks; records the family's row layout as the
    model's ``position_feature`` (so ``model.read_out`` finds token rows) and checks that every
    token-level task has them."""
    family = make_columns(columns, model.input_spec, len(model.tasks), hidden, encoder=encoder, **kwargs)
    model.position_feature = family.position_feature
    check_task_levels(model.tasks, family.position_feature, encoder if family.takes_encoder else f"columns: {columns}")
    return family
