"""Customized Gate Control (CGC) and Progressive Layered Extraction (PLE).

Tang, Liu, Zhao, Gong. "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL)
Model for Personalized Recommendations", RecSys 2020. CGC: per task, ``m_k`` task-specific experts
plus ``m_s`` shared experts; task k's gate (linear + softmax on its input) mixes its own and the
shared experts only. PLE stacks ``num_levels`` extraction layers: at level j, task k's experts and
gate read task k's output of level j-1, the shared experts read the shared output of level j-1,
which a shared gate over all experts produces on every level but the last. CGC is PLE with one
level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import TaskHeads
from polytask.nn.extraction import ExtractionLayer
from polytask.registry import MODELS
from polytask.tasks import Task


@MODELS.register("ple")
class PLE(MultiTaskModel):
    """Progressive Layered Extraction: stacked task-specific + shared experts (Tang et al., RecSys 2020).

    ``encoder``/``encoder_params`` pick the shared input encoder (see :mod:`polytask.encoders`);
    the first level's experts and gates read its output.
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        num_levels: int = 2,
        specific_experts: int = 1,
        shared_experts: int = 1,
        expert_hidden: list[int] = [16],  # noqa: B006
        tower_hidden: list[int] = [8],  # noqa: B006
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        if num_levels < 1:
            raise ValueError("num_levels must be >= 1")
        if not expert_hidden:
            raise ValueError("expert_hidden needs at least one layer")
        self.input = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim)
        levels, width = [], self.input.out_dim
        for j in range(num_levels):
            layer = ExtractionLayer(width, len(tasks), specific_experts, shared_experts, expert_hidden,
                                    shared_gate=j < num_levels - 1, act=activation, dropout=dropout)
            levels.append(layer)
            width = layer.out_dim
        self.levels = nn.ModuleList(levels)
        self.heads = TaskHeads(tasks, width, tower_hidden, act=activation, dropout=dropout)

    def shared_modules(self) -> list[nn.Module]:
        # each level's experts are one tensor holding the task-specific and the shared experts;
        # every task reaches it through the shared ones, so it is listed as shared (a gradient
        # method sees zero gradient from task k on the other tasks' specific slices)
        return [self.input, *(level.experts for level in self.levels)]

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        x = self.share(self.input(features))
        task_in, shared_in = x, x
        for level in self.levels:
            task_in, shared_in = level(task_in, shared_in)
        return self.read_out(self.heads(task_in), features)

    def diagnostics(self) -> dict[str, Any]:
        """Mean gate weight per task over its selected experts (own, then shared), per level, and
        each task gate's mean per-row entropy in nats (``gate_entropy``, same nesting): over every
        row of the latest evaluation pass (the validation split, when the trainer logs them), else
        over the last batch (:class:`~polytask.nn.experts.GateRecord`)."""
        out, entropy = {}, {}
        for j, level in enumerate(self.levels):
            summary = level.record.summary()
            if summary is not None:
                out[f"level{j}"] = dict(zip(self.task_names, summary[0].tolist()))
                entropy[f"level{j}"] = dict(zip(self.task_names, summary[1].tolist()))
        return {"gates": out, "gate_entropy": entropy} if out else {}


@MODELS.register("cgc")
class CGC(PLE):
    """Customized Gate Control: one extraction layer of task-specific + shared experts (PLE paper).

    ``encoder``/``encoder_params`` pick the shared input encoder, as for PLE.
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        specific_experts: int = 1,
        shared_experts: int = 1,
        expert_hidden: list[int] = [16],  # noqa: B006
        tower_hidden: list[int] = [8],  # noqa: B006
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks, num_levels=1, specific_experts=specific_experts,
                         shared_experts=shared_experts, expert_hidden=expert_hidden, tower_hidden=tower_hidden,
                         embedding_dim=embedding_dim, encoder=encoder, encoder_params=encoder_params,
                         activation=activation, dropout=dropout)
