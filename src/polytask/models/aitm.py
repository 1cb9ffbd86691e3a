"""Adaptive Information Transfer Multi-task (AITM) framework.

Xi, Chen, Yan, Zhang, Zhu, Zhuang, Chen. "Modeling the Sequential Dependence among Audience
Multi-step Conversions with Multi-task Learning in Targeted Display Advertising", KDD 2021
(reference code: xidongbo/AITM, AITM.py and AITM_standard.py; adtalos/AITM-torch).

Tasks form a sequence of conversion steps (impression -> click -> purchase -> ...), every one
labelled on the entire impression space. Over a shared embedding ``x``, task ``t`` has a tower
``q_t = f_t(x)`` (all towers end in the same width ``k``), and:

* ``z_1 = q_1``;
* for ``t >= 2``: the information transfer ``p_{t-1} = g_{t-1}(z_{t-1})`` (a linear layer ``k -> k``
  with the activation, as in the reference code), and the Adaptive Information Transfer module::

      z_t = sum_{u in {p_{t-1}, q_t}} w_u h1(u),
      w_u = exp(w'_u) / sum_{u'} exp(w'_{u'}),   w'_u = <h2(u), h3(u)> / sqrt(k),

  with ``h1, h2, h3`` linear maps ``k -> k`` without bias, one set shared by all steps (as in the
  reference code);
* the output ``y_t = sigmoid(w_t^T z_t + b_t)`` (a linear output layer per task on ``z_t``).

The transfer takes the previous task's AIT output ``z_{t-1}`` (for the second task that is the
first task's tower output ``q_1``). The gradient of every later task's loss reaches earlier towers
through the transfers (nothing is detached).

The behavioural expectation calibrator (the paper's "label constraint"): with probabilities
``y_t``, the penalty ``calibration_weight * mean_rows(sum_t max(y_t - y_{t-1}, 0))`` over
consecutive binary tasks discourages predicting a later step more likely than the step before it.
``calibration_weight`` defaults to 0.6, the reference code's default (``--weight 0.6``); the
penalty is returned by :meth:`AITM.regularization` under the name ``calibration`` and logged as a
term of its own. Tasks of other kinds may be part of the sequence (the transfer is between
representations); they add no calibration term.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import ParallelLinear, ParallelMLP
from polytask.nn.mlp import activation as make_activation
from polytask.registry import MODELS
from polytask.tasks import Task


class AdaptiveInformationTransfer(nn.Module):
    """``z = sum_u w_u h1(u)`` over ``u in {p, q}`` with ``w = softmax_u(<h2(u), h3(u)> / sqrt(k))``.

    Input: the transferred ``p`` and the tower output ``q``, each ``[B, k]``. Returns ``z [B, k]``
    and the weights ``[B, 2]`` (column 0: ``p``, column 1: ``q``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.h = nn.Linear(dim, 3 * dim, bias=False)  # h1, h2, h3 in one matmul

    def forward(self, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        u = torch.stack([p, q], dim=1)  # [B, 2, k]
        h1, h2, h3 = self.h(u).split(self.dim, dim=-1)
        weights = torch.softmax((h2 * h3).sum(-1) / math.sqrt(self.dim), dim=1)  # [B, 2]
        return (weights.unsqueeze(-1) * h1).sum(1), weights


@MODELS.register("aitm")
class AITM(MultiTaskModel):
    """AITM: towers per conversion step, information transfer with attention, calibration penalty (Xi et al., KDD 2021).

    Args:
        task_order: the sequence of steps by task name (empty: the configured order); when given
            it lists every configured task once.
        tower_hidden: hidden sizes of every tower; the last is the width ``k`` of ``q_t``,
            ``p_t`` and ``z_t`` (reference code: 128-64-32).
        embedding_dim: width of every categorical embedding (reference code: 5).
        calibration_weight: ``alpha`` of the calibration penalty (reference code default 0.6;
            0 switches it off).
        encoder, encoder_params: the input encoder (see :mod:`polytask.encoders`).
        dropout: after every tower layer and the transfer (reference code keep-probs 0.9/0.7/0.7).
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        task_order: list[str] = [],  # noqa: B006 - read-only default
        tower_hidden: list[int] = [90, 50, 20],  # noqa: B006 - same towers as esmm's default
        embedding_dim: int = 8,
        calibration_weight: float = 0.6,
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        order = list(task_order) or list(self.task_names)
        if sorted(order) != sorted(self.task_names):
            raise ValueError(
                f"aitm: task_order {order} must list every configured task once (tasks: {', '.join(self.task_names)})"
            )
        if calibration_weight < 0:
            raise ValueError("aitm: calibration_weight must be >= 0")
        by_name = {t.name: t for t in tasks}
        self.order = order
        self.ordered_tasks = [by_name[n] for n in order]
        self.calibration_weight = calibration_weight
        self.input = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim)
        n = len(order)
        self.towers = ParallelMLP(n, self.input.out_dim, tower_hidden, act=activation, dropout=dropout)
        k = self.towers.out_dim
        self.transfers = nn.ModuleList(
            nn.Sequential(nn.Linear(k, k), make_activation(activation), *([nn.Dropout(dropout)] if dropout else []))
            for _ in range(n - 1)
        )
        self.ait = AdaptiveInformationTransfer(k) if n > 1 else None
        self.dims = [t.output_dim for t in self.ordered_tasks]
        self.scalar = [t.spec.scalar_output for t in self.ordered_tasks]
        self.out = ParallelLinear(n, k, max(self.dims))
        self._last_outputs: dict[str, Tensor] = {}
        self._last_weights: list[Tensor] = []

    def shared_modules(self) -> list[nn.Module]:
        return [self.input]

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        x = self.share(self.input(features))
        q = self.towers(x)  # [T, B, k]
        z = [q[0]]
        weights = []
        for t in range(1, q.shape[0]):
            zt, w = self.ait(self.transfers[t - 1](z[-1]), q[t])
            z.append(zt)
            weights.append(w.detach())
        y = self.out(torch.stack(z))  # [T, B, max_dim]
        out = {
            name: (y[i, :, 0] if scalar else y[i, :, :dim])
            for i, (name, dim, scalar) in enumerate(zip(self.order, self.dims, self.scalar))
        }
        self._last_outputs = out
        self._last_weights = weights
        return self.read_out({name: out[name] for name in self.task_names}, features)

    def calibration_penalty(self, outputs: dict[str, Tensor]) -> Tensor | None:
        """``calibration_weight * mean_rows(sum_t max(y_t - y_{t-1}, 0))`` over consecutive binary
        tasks of the sequence (probabilities ``y``); None when there is no such pair."""
        def prob(logit: Tensor) -> Tensor:
            return torch.sigmoid(logit.to(torch.promote_types(logit.dtype, torch.float32)))

        terms = [
            torch.relu(prob(outputs[b.name]) - prob(outputs[a.name]))
            for a, b in zip(self.ordered_tasks, self.ordered_tasks[1:])
            if a.kind == "binary" and b.kind == "binary"
        ]
        if not terms:
            return None
        return self.calibration_weight * torch.stack(terms).sum(0).mean()

    def regularization(self) -> dict[str, Tensor]:
        """The calibration penalty of the last forward pass (``{"calibration": ...}``)."""
        if not self.calibration_weight or not self._last_outputs:
            return {}
        penalty = self.calibration_penalty(self._last_outputs)
        return {} if penalty is None else {"calibration": penalty}

    def diagnostics(self) -> dict[str, Any]:
        """Mean attention weights of the last batch per task from the second step on:
        ``{"attention": {task: {"transfer": w_p, "own": w_q}}}``."""
        if not self._last_weights:
            return {}
        att = {}
        for name, w in zip(self.order[1:], self._last_weights):
            mean = w.float().mean(0).tolist()
            att[name] = {"transfer": mean[0], "own": mean[1]}
        return {"attention": att}
