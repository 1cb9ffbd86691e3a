"""One extraction layer of CGC / PLE (Tang et al., RecSys 2020): task-specific and shared experts.

Experts are ordered ``[task 0's m_k, task 1's m_k, ..., the m_s shared]`` and evaluated as one
``ParallelMLP``. Task k's gate mixes its own experts and the shared ones; the optional shared
gate (every PLE level but the last) mixes all experts and feeds the next level's shared branch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polytask.nn.experts import GateRecord, ParallelLinear, ParallelMLP, softmax_last


class ExtractionLayer(nn.Module):
    """Args:
        in_dim: width of the branch inputs.
        num_tasks: T.
        specific: experts per task (m_k).
        shared: shared experts (m_s).
        hidden: each expert's hidden sizes.
        shared_gate: whether to produce a shared output (a gate over all experts).
    Forward: ``task_inputs`` ``[B, in]`` (level 0: every branch reads the same input) or
    ``[T, B, in]``, and ``shared_input`` ``[B, in]``; returns task outputs ``[T, B, H]`` and the
    shared output ``[B, H]`` (or None).
    """

    def __init__(self, in_dim: int, num_tasks: int, specific: int, shared: int, hidden: Sequence[int], *,
                 shared_gate: bool, act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        if specific < 0 or shared < 0 or specific + shared < 1:
            raise ValueError("an extraction layer needs at least one expert per task gate")
        self.num_tasks, self.specific, self.shared = num_tasks, specific, shared
        n = num_tasks * specific + shared
        self.experts = ParallelMLP(n, in_dim, hidden, act=act, dropout=dropout)
        self.out_dim = self.experts.out_dim
        self.task_gates = ParallelLinear(num_tasks, in_dim, specific + shared, bias=False)
        self.shared_gate = nn.Linear(in_dim, n, bias=False) if shared_gate else None
        # which branch input each expert reads (T = the shared branch), and which experts each task selects
        owner = [t for t in range(num_tasks) for _ in range(specific)] + [num_tasks] * shared
        self.register_buffer("owner", torch.tensor(owner), persistent=False)
        chosen = [list(range(t * specific, (t + 1) * specific)) + list(range(num_tasks * specific, n))
                  for t in range(num_tasks)]
        self.register_buffer("chosen", torch.tensor(chosen), persistent=False)
        self.record = GateRecord()  # what the diagnostics read of the task gates

    @property
    def last_gates(self) -> Tensor | None:
        """The task gates' weights ``[T, B, m_k + m_s]`` of the last batch (detached)."""
        return self.record.last

    def forward(self, task_inputs: Tensor, shared_input: Tensor) -> tuple[Tensor, Tensor | None]:
        if task_inputs.dim() == 2:
            experts = self.experts(task_inputs)  # one input for all: one matmul
            gate_in = task_inputs
        else:
            branches = torch.cat([task_inputs, shared_input.unsqueeze(0)])  # [T+1, B, in]
            experts = self.experts(branches.index_select(0, self.owner))  # [n, B, H]
            gate_in = task_inputs
        weights = softmax_last(self.task_gates(gate_in))  # [T, B, m_k + m_s]
        self.record.update(weights)
        selected = experts[self.chosen]  # [T, m_k + m_s, B, H]
        task_out = torch.einsum("tbe,tebh->tbh", weights, selected)
        shared_out = None
        if self.shared_gate is not None:
            g = softmax_last(self.shared_gate(shared_input))  # [B, n]
            shared_out = torch.einsum("be,ebh->bh", g, experts)
        return task_out, shared_out
