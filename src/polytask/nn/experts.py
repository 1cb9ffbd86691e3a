"""Many small networks evaluated as one batched tensor op: experts of a mixture, towers of tasks.

``n`` MLPs of identical shape are stored as stacked weights ``[n, in, out]`` and applied with one
``baddbmm`` per layer, instead of a Python loop over ``n`` modules (the loop costs a kernel launch
and an optimiser tensor per member; see ``shared/reference/performance.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polytask.nn.capture import capturing
from polytask.nn.mlp import activation, check_widths


def softmax_last(x: Tensor) -> Tensor:
    """Softmax over a short last dimension (a gate over a handful of experts), written out: on CPU
    ``torch.softmax`` over a last dimension of 8 costs about twice as much as these few ops."""
    e = torch.exp(x - x.amax(dim=-1, keepdim=True).detach())
    return e / e.sum(dim=-1, keepdim=True)


class ParallelLinear(nn.Module):
    """``n`` independent linear maps. Input ``[B, in]`` (the same for all members) or
    ``[n, B, in]`` (one per member); output ``[n, B, out]``. Initialised like ``nn.Linear``."""

    def __init__(self, n: int, in_dim: int, out_dim: int, *, bias: bool = True) -> None:
        super().__init__()
        check_widths([out_dim], "layer widths")
        self.n, self.in_dim, self.out_dim = n, in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_dim) if self.in_dim else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            # shared input: one [B, in] x [in, n*out] matmul (cheaper forward and backward than a
            # bmm over n broadcast copies of x); the result is a [n, B, out] view
            w = self.weight.permute(1, 0, 2).reshape(self.in_dim, self.n * self.out_dim)
            y = x @ w if self.bias is None else torch.addmm(self.bias.reshape(1, -1), x, w)
            return y.view(x.shape[0], self.n, self.out_dim).transpose(0, 1)
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"n={self.n}, in_dim={self.in_dim}, out_dim={self.out_dim}, bias={self.bias is not None}"


class ParallelMLP(nn.Module):
    """``n`` identical-shape MLPs run together: ``[B, in]`` or ``[n, B, in]`` -> ``[n, B, hidden[-1]]``."""

    def __init__(self, n: int, in_dim: int, hidden: Sequence[int], *, act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        check_widths(hidden)
        self.n = n
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [ParallelLinear(n, width, h), activation(act)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.layers = nn.Sequential(*layers)
        self.out_dim = width

    def forward(self, x: Tensor) -> Tensor:
        if not len(self.layers) and x.dim() == 2:
            return x.unsqueeze(0).expand(self.n, -1, -1)
        return self.layers(x)


def gate_entropy(weights: Tensor) -> Tensor:
    """Mean entropy (nats) of each gate's rows: ``[G, B, E]`` -> ``[G]``. ``log E`` is a gate that
    spreads evenly over its experts, 0 one that picks a single expert per row; the entropy of the
    *mean* gate can be high while every row is peaked, which is why it is taken per row."""
    w = weights.float()
    return -(w * torch.log(w.clamp_min(1e-12))).sum(-1).mean(-1)


class GateRecord(nn.Module):
    """What the diagnostics read of a gate's weights ``[G, B, E]``: the last batch's, and while the
    model is in eval mode the mean weight of every expert and the mean per-row entropy over every
    row since the mode was set. Each ``model.eval()`` (every evaluation pass) starts a new mean, so
    the logged gates describe the whole validation split rather than its last, possibly small,
    batch. In training mode only the last batch is kept (no extra work per step); nothing is
    recorded while the model is traced or exported (:func:`~polytask.nn.capture.capturing`).

    Eval batches are held (detached) until about :attr:`FLUSH` gate weights have gathered, then
    reduced together, so the record costs a few kernels per million weights rather than per batch
    (per batch it slowed prediction of the speed benchmark's MMoE by about 9 %), and holds at most
    that many weights."""

    #: held gate weights (elements) that trigger a reduction
    FLUSH = 1 << 20

    def __init__(self) -> None:
        super().__init__()
        self.last: Tensor | None = None
        self._clear()

    def _clear(self) -> None:
        self.rows = 0
        self._pending: list[Tensor] = []
        self._held = 0
        self._weight_sum: Tensor | None = None
        self._entropy_sum: Tensor | None = None

    def train(self, mode: bool = True) -> GateRecord:
        self._clear()  # a new pass starts with every change of mode
        return super().train(mode)

    def update(self, weights: Tensor) -> None:
        """Record one batch's weights (a plain method, not ``forward``: no module-call overhead)."""
        w = weights.detach()
        self.last = w
        if self.training or capturing():
            return
        self._pending.append(w)
        self.rows += w.shape[1]
        self._held += w.numel()
        if self._held >= self.FLUSH:
            self._reduce()

    def _reduce(self) -> None:
        if not self._pending:
            return
        f = torch.cat(self._pending, 1).float() if len(self._pending) > 1 else self._pending[0].float()
        sums, entropy = f.sum(1), torch.special.entr(f).sum((1, 2))  # [G, E], [G]
        if self._weight_sum is not None:
            sums, entropy = self._weight_sum + sums, self._entropy_sum + entropy
        self._weight_sum, self._entropy_sum = sums, entropy
        self._pending, self._held = [], 0

    def summary(self) -> tuple[Tensor, Tensor] | None:
        """``(mean weight [G, E], mean per-row entropy in nats [G])`` over the rows of the current
        evaluation pass, else over the last batch; None before any forward pass."""
        if self.rows:
            self._reduce()
            return self._weight_sum / self.rows, self._entropy_sum / self.rows
        if self.last is None:
            return None
        return self.last.float().mean(1), gate_entropy(self.last)


class Gates(nn.Module):
    """``num_gates`` softmax gates over ``num_experts``, computed as one linear map of the gate input.

    As in MMoE (Ma et al., KDD 2018, Eq. 5): ``g^k(x) = softmax(W_gk x)``, linear on the raw input
    with no bias by default. Returns ``[num_gates, B, num_experts]``; :attr:`record` keeps what the
    diagnostics read (:class:`GateRecord`).
    """

    def __init__(self, in_dim: int, num_experts: int, num_gates: int, *, bias: bool = False) -> None:
        super().__init__()
        self.num_experts, self.num_gates = num_experts, num_gates
        self.proj = nn.Linear(in_dim, num_gates * num_experts, bias=bias)
        self.record = GateRecord()

    @property
    def last(self) -> Tensor | None:
        """The last batch's weights ``[G, B, E]`` (detached)."""
        return self.record.last

    def forward(self, x: Tensor) -> Tensor:
        logits = self.proj(x).view(x.shape[0], self.num_gates, self.num_experts)
        weights = softmax_last(logits).transpose(0, 1)  # [G, B, E]
        self.record.update(weights)
        return weights

    @staticmethod
    def mix(weights: Tensor, experts: Tensor) -> Tensor:
        """Gate-weighted sum of expert outputs: ``[G, B, E]`` x ``[E, B, H]`` -> ``[G, B, H]``.

        Computed as one ``bmm`` batched over rows (``[B, G, E] x [B, E, H]``): gates and experts
        are produced row-major, so both operands are contiguous in that layout."""
        return torch.bmm(weights.transpose(0, 1), experts.transpose(0, 1)).transpose(0, 1)
