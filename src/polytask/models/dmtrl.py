"""Deep Multi-Task Representation Learning, tensor-factorisation sharing (Yang & Hospedales, ICLR
2017); the MMoE paper's "Tensor-Factorization" baseline uses its Tucker form.

A shared input encoder, then per-task hidden layers whose weights, stacked over tasks, are
learned as a Tucker, tensor-train or last-axis-flattening factorisation (see
:mod:`polytask.nn.tensor_factorization`), then per-task towers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import TaskHeads
from polytask.nn.mlp import activation as make_activation
from polytask.nn.tensor_factorization import FactorisedColumnLayer
from polytask.registry import MODELS
from polytask.tasks import Task


@MODELS.register("tensor_factorization")
class TensorFactorization(MultiTaskModel):
    """Per-task layers whose stacked weights are Tucker / TT / LAF factorised (DMTRL, ICLR 2017).

    ``encoder``/``encoder_params`` pick the shared input encoder (see :mod:`polytask.encoders`).
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        hidden: list[int] = [64],  # noqa: B006
        factorization: str = "tucker",
        ranks: list[int] | None = None,
        tower_hidden: list[int] = [8],  # noqa: B006
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        if not hidden:
            raise ValueError("hidden needs at least one factorised layer")
        self.input = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim)
        layers, width = [], self.input.out_dim
        for h in hidden:
            layers.append(FactorisedColumnLayer(len(tasks), width, h, factorization=factorization, ranks=ranks,
                                                act=make_activation(activation)))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.layers = nn.Sequential(*layers)
        self.heads = TaskHeads(tasks, width, tower_hidden, act=activation, dropout=dropout)

    def shared_modules(self) -> list[nn.Module]:
        return [self.input] + [layer.weights for layer in self.layers if isinstance(layer, FactorisedColumnLayer)]

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.read_out(self.heads(self.layers(self.share(self.input(features)))), features)
