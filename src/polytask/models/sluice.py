"""Sluice networks (Ruder, Bingel, Augenstein, Søgaard, "Latent Multi-task Architecture Learning",
AAAI 2019).

Per-task columns whose layer outputs are split into ``m`` subspaces. After every layer a learned
``(T*m) x (T*m)`` alpha matrix mixes all subspaces of all tasks; each task's head reads a learned
beta-weighted sum of that task's layer outputs (so tasks can pick their depth); an optional
penalty ``sum_{t,l} ||G_1^T G_2||_F^2`` pushes the weight blocks of a layer's subspaces apart.
Defaults follow the reference code: balanced alpha (every entry ``1/(T*m)``), beta 0.9 on the last
layer and ``0.1/(L-1)`` on the others, orthogonality weight 0 (off).

The columns are any registered column family (``columns: mlp | cnn | lstm``, see
:mod:`polytask.nn.columns`); subspaces split a layer's channels (``channel_dim``), and ``G`` is
the family's per-task weight matrix of the layer (:meth:`~polytask.nn.columns.ColumnFamily.
layer_weights`, output units grouped by channel). Beta sums layer outputs, which needs one shape:
every layer must have the same number of channels, and with ``cnn`` columns the feature maps of
earlier layers are adaptively average-pooled to the last layer's spatial size before the sum
(the family's ``align``), so the heads read the usual conv read-out of the mixed maps.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import TaskHeads
from polytask.nn.columns import build_columns
from polytask.registry import MODELS
from polytask.tasks import Task


def subspace_orthogonality(weight: Tensor, subspaces: int) -> Tensor:
    """``sum_{a<b} ||G_a^T G_b||_F^2`` summed over tasks, for a column layer's weight matrix
    ``[T, in, out]`` whose output units are split into ``subspaces`` equal blocks ``G``."""
    blocks = weight.chunk(subspaces, dim=-1)  # each [T, in, C/m]
    total = weight.new_zeros(())
    for a, b in itertools.combinations(blocks, 2):
        total = total + torch.bmm(a.transpose(1, 2), b).square().sum()
    return total


@MODELS.register("sluice")
class Sluice(MultiTaskModel):
    """Sluice network: subspace-mixing alpha units between per-task layers, beta layer mixing (Ruder et al., 2019)."""

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        hidden: list[int] = [32, 32],  # noqa: B006
        subspaces: int = 2,
        tower_hidden: list[int] = [8],  # noqa: B006
        orthogonality: float = 0.0,
        alpha_init: str = "balanced",
        columns: str = "mlp",
        column_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        embedding_dim: int = 4,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        if not hidden or len(set(hidden)) != 1:
            raise ValueError("hidden: sluice layers must all have the same width (beta sums their outputs)")
        if subspaces < 1 or hidden[0] % subspaces:
            raise ValueError(f"subspaces: {subspaces} must divide the layer width {hidden[0]}")
        if alpha_init not in ("balanced", "imbalanced"):
            raise ValueError("alpha_init must be 'balanced' or 'imbalanced'")
        t, m, n_layers = len(tasks), subspaces, len(hidden)
        self.subspaces, self.orthogonality = m, orthogonality
        family = build_columns(self, columns, hidden, encoder=encoder, encoder_params=encoder_params,
                               embedding_dim=embedding_dim, act=activation, dropout=dropout, params=column_params)
        self.inputs = family.release_inputs()  # mlp: per-task encoders, named inputs.* as before families
        self.columns = family
        size = t * m
        if alpha_init == "balanced":
            alpha = torch.full((size, size), 1.0 / size)
        else:  # mostly keep each subspace where it is
            alpha = torch.full((size, size), 0.1 / (size - 1) if size > 1 else 0.0)
            alpha.fill_diagonal_(0.9 if size > 1 else 1.0)
        self.alpha = nn.Parameter(alpha.expand(n_layers, -1, -1).clone())  # [L, T*m, T*m]
        beta = torch.full((t, n_layers), 0.1 / (n_layers - 1) if n_layers > 1 else 0.0)
        beta[:, -1] = 0.9 if n_layers > 1 else 1.0
        self.beta = nn.Parameter(beta)  # [T, L]
        self.heads = TaskHeads(tasks, family.out_dim, tower_hidden, act=activation, dropout=dropout)

    def shared_modules(self) -> list[nn.Module]:
        return []

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def mix_subspaces(self, h: Tensor, alpha: Tensor) -> Tensor:
        """``alpha [T*m, T*m]`` applied to the ``T*m`` subspaces of a layer output ``[T, B, ...]``
        (each task's channels split into ``m`` equal blocks, order task-major)."""
        # axes counted from the front: the TorchScript-based ONNX exporter writes a negative axis
        # of movedim into a Transpose permutation, which ONNX rejects
        t, m, n = h.shape[0], self.subspaces, h.dim()
        cd = self.columns.channel_dim % n
        x = h.movedim(cd, n - 1)  # [T, *rest, C]
        shape = x.shape
        sub = x.reshape(*shape[:-1], m, shape[-1] // m).movedim(n - 1, 1)  # [T, m, *rest, C/m]
        mixed = (alpha @ sub.reshape(t * m, -1)).view(sub.shape)
        return mixed.movedim(1, n - 1).reshape(shape).movedim(n - 1, cd)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        h = self.columns.stem(features)  # [T, B, ...]
        outputs = []
        for i in range(len(self.columns.layers)):
            h = self.mix_subspaces(self.columns.run_layer(i, h, features), self.alpha[i])
            outputs.append(self.columns.align(h, i))
        mixed = torch.einsum("tl,lt...->t...", self.beta, torch.stack(outputs))
        return self.read_out(self.heads(self.columns.read_out(mixed, features)), features)

    def regularization(self) -> dict[str, Tensor]:
        if not self.orthogonality or self.subspaces < 2:
            return {}
        penalty = sum(subspace_orthogonality(self.columns.layer_weights(i), self.subspaces)
                      for i in range(len(self.columns.layers)))
        return {"sluice_orthogonality": self.orthogonality * penalty}

    def diagnostics(self) -> dict[str, Any]:
        return {"alpha": self.alpha.detach().tolist(), "beta": dict(zip(self.task_names, self.beta.detach().tolist()))}
