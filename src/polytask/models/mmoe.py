"""Multi-gate Mixture-of-Experts (MMoE) and its one-gate ablation OMoE.

Ma, Zhao, Yi, Chen, Hong, Chi. "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD 2018. ``y_k = h_k(sum_i g^k(x)_i f_i(x))`` with
``g^k(x) = softmax(W_gk x)``: identical ReLU experts ``f_i``, one linear+softmax gate per task on
the raw input. OMoE shares one gate across all tasks. The experts run as one batched op and the
gates as one linear map.

The shared representation (for representation-gradient weightings) is the experts' output
``[E, B, H]``. The gates also read the input directly, so in that mode the input embedding
receives the combined gradient of the expert path only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import Gates, ParallelMLP, TaskHeads
from polytask.registry import MODELS
from polytask.tasks import Task


@MODELS.register("mmoe")
class MMoE(MultiTaskModel):
    """Multi-gate Mixture-of-Experts: shared experts, one softmax gate per task (Ma et al., KDD 2018).

    ``encoder``/``encoder_params`` pick the shared input encoder (see :mod:`polytask.encoders`);
    experts and gates read its output.
    """

    one_gate: bool = False

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        num_experts: int = 8,
        expert_hidden: list[int] = [16],  # noqa: B006 - paper's synthetic setting
        tower_hidden: list[int] = [8],  # noqa: B006
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        gate_bias: bool = False,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        if num_experts < 1:
            raise ValueError("num_experts must be >= 1")
        if not expert_hidden:
            raise ValueError("expert_hidden needs at least one layer")
        self.input = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim)
        self.experts = ParallelMLP(num_experts, self.input.out_dim, expert_hidden, act=activation, dropout=dropout)
        self.gates = Gates(self.input.out_dim, num_experts, 1 if self.one_gate else len(tasks), bias=gate_bias)
        self.heads = TaskHeads(tasks, self.experts.out_dim, tower_hidden, act=activation, dropout=dropout)

    def shared_modules(self) -> list[nn.Module]:
        shared = [self.input, self.experts]
        return shared + [self.gates] if self.one_gate else shared

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        x = self.input(features)
        experts = self.share(self.experts(x))  # [E, B, H]
        mixed = Gates.mix(self.gates(x), experts)  # [G, B, H]
        if self.one_gate:
            mixed = mixed.expand(len(self.task_names), -1, -1)
        return self.read_out(self.heads(mixed), features)

    def diagnostics(self) -> dict[str, Any]:
        """Mean gate weight of every expert per task (``{"gates": {task: [E]}}``) and each gate's
        mean per-row entropy in nats (``{"gate_entropy": {task: h}}``): over every row of the latest
        evaluation pass (the validation split, when the trainer logs them), else over the last batch
        (:class:`~polytask.nn.experts.GateRecord`)."""
        summary = self.gates.record.summary()
        if summary is None:
            return {}
        mean, entropy = summary  # [G, E], [G]
        names = ["shared"] if self.one_gate else self.task_names
        return {"gates": dict(zip(names, mean.tolist())), "gate_entropy": dict(zip(names, entropy.tolist()))}


@MODELS.register("omoe")
class OMoE(MMoE):
    """One-gate Mixture-of-Experts: MMoE's ablation with a single gate shared by all tasks."""

    one_gate = True
