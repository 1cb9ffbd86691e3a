"""Deep Relationship Networks / Multilinear Relationship Networks (Long & Wang 2015; Long, Cao,
Wang, Yu, NeurIPS 2017).

Shared feature layers, then task-specific layers whose weights, stacked as ``W [D1, D2, T]``
(input features x output units x tasks), carry a tensor-normal prior
``vec(W) ~ N(0, Sigma3 (x) Sigma2 (x) Sigma1)``. Its negative log-density adds
``1/2 * vec(W)^T (Sigma1 (x) Sigma2 (x) Sigma3)^-1 vec(W)`` to the loss (:meth:`regularization`),
and the covariances are re-estimated in closed form every ``cov_update_every`` training steps:

``Sigma3 = W_(3) (Sigma2 (x) Sigma1)^-1 W_(3)^T / (D1 D2) + eps I`` (and likewise Sigma1, Sigma2).

Each estimate is rescaled to trace = its dimension before it is inverted: the overall scale of a
Kronecker covariance is not identifiable, and without a fixed scale the penalty stays near
``D1 D2 T / 2`` however small the weights get while its gradient grows as they shrink (the
reference code bounds the trace for the same reason). As in the official MRN code, only the task covariance is updated by default (feature and class
covariances stay identity unless enabled) and the precisions start at identity. The learned task
covariance is readable with :meth:`task_covariance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import MLP, TaskHeads
from polytask.nn.columns import TaskColumns
from polytask.registry import MODELS
from polytask.tasks import Task


def tensor_normal_penalty(w: Tensor, p1: Tensor, p2: Tensor, p3: Tensor) -> Tensor:
    """``vec(W)^T (P1 (x) P2 (x) P3) vec(W)`` for ``w [T, D1, D2]`` and precisions ``P1 [D1, D1]``,
    ``P2 [D2, D2]``, ``P3 [T, T]`` (the mode products, no Kronecker matrix is built)."""
    return torch.einsum("tij,ia,jb,ts,sab->", w, p1, p2, p3, w)


def covariance_update(w: Tensor, p1: Tensor, p2: Tensor, p3: Tensor, mode: int, eps: float) -> Tensor:
    """Closed-form covariance of one mode given the other two precisions (flip-flop MLE step).
    ``mode`` 1: features ``[D1, D1]``; 2: classes/units ``[D2, D2]``; 3: tasks ``[T, T]``."""
    t, d1, d2 = w.shape
    if mode == 1:
        cov = torch.einsum("tij,jb,ts,sab->ia", w, p2, p3, w) / (d2 * t)
    elif mode == 2:
        cov = torch.einsum("tij,ia,ts,sab->jb", w, p1, p3, w) / (d1 * t)
    else:
        cov = torch.einsum("tij,ia,jb,sab->ts", w, p1, p2, w) / (d1 * d2)
    return cov + eps * torch.eye(cov.shape[0], dtype=w.dtype, device=w.device)


@MODELS.register("drn")
class DRN(MultiTaskModel):
    """Shared layers, then task layers under a tensor-normal prior with learned task covariance (Long et al.).

    ``encoder``/``encoder_params`` pick the shared input encoder (see :mod:`polytask.encoders`).
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        shared_hidden: list[int] = [64],  # noqa: B006
        task_hidden: list[int] = [32],  # noqa: B006
        tower_hidden: list[int] = [],  # noqa: B006
        trade_off: float = 1e-3,
        cov_update_every: int = 100,
        eps: float = 1e-5,
        update_feature_cov: bool = False,
        update_class_cov: bool = False,
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        if cov_update_every < 1:
            raise ValueError("cov_update_every must be >= 1")
        self.trade_off, self.cov_update_every, self.eps = trade_off, cov_update_every, eps
        self.update_modes = [3] + ([1] if update_feature_cov else []) + ([2] if update_class_cov else [])
        self.input = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim)
        self.bottom = MLP(self.input.out_dim, shared_hidden, act=activation, dropout=dropout)
        self.columns = TaskColumns(len(tasks), self.bottom.out_dim, task_hidden, act=activation, dropout=dropout)
        self.heads = TaskHeads(tasks, self.columns.out_dim, tower_hidden, act=activation, dropout=dropout)
        for i, layer in enumerate(self.columns.layers):  # precisions (inverse covariances), identity at start
            _, d1, d2 = layer.linear.weight.shape
            self.register_buffer(f"prec1_{i}", torch.eye(d1))
            self.register_buffer(f"prec2_{i}", torch.eye(d2))
            self.register_buffer(f"prec3_{i}", torch.eye(len(tasks)))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def shared_modules(self) -> list[nn.Module]:
        return [self.input, self.bottom]

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.read_out(self.heads(self.columns(self.share(self.bottom(self.input(features))))), features)

    def _precisions(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        return getattr(self, f"prec1_{i}"), getattr(self, f"prec2_{i}"), getattr(self, f"prec3_{i}")

    @torch.no_grad()
    def update_covariances(self) -> None:
        """One closed-form update of the enabled covariances of every task layer."""
        for i, layer in enumerate(self.columns.layers):
            w = layer.linear.weight.detach()
            for mode in self.update_modes:
                p1, p2, p3 = self._precisions(i)
                cov = covariance_update(w, p1, p2, p3, mode, self.eps)
                # only the Kronecker product's overall scale is identifiable, and an unnormalised
                # estimate makes the penalty ~ D1*D2*T whatever the weights' size, with a gradient
                # that grows as they shrink (weights collapse); fixing tr(Sigma) = dim keeps the
                # prior at identity's scale, a task-correlated L2 penalty
                cov = cov * (cov.shape[0] / cov.diagonal().sum().clamp_min(1e-12))
                getattr(self, f"prec{mode}_{i}").copy_(torch.linalg.inv(cov))

    def regularization(self) -> dict[str, Tensor]:
        """The prior's penalty; also advances the covariance-update schedule while training."""
        if self.training and torch.is_grad_enabled():
            self.steps += 1
            if int(self.steps) % self.cov_update_every == 0:
                self.update_covariances()
        if not self.trade_off:
            return {}
        penalty = sum(tensor_normal_penalty(layer.linear.weight, *self._precisions(i))
                      for i, layer in enumerate(self.columns.layers))
        return {"drn_prior": 0.5 * self.trade_off * penalty}

    def task_covariance(self, layer: int = -1) -> Tensor:
        """The learned task covariance ``Sigma3`` of a task layer (inverse of its precision)."""
        i = layer % len(self.columns.layers)
        return torch.linalg.inv(getattr(self, f"prec3_{i}"))

    def diagnostics(self) -> dict[str, Any]:
        cov = self.task_covariance()
        d = cov.diagonal().sqrt()
        return {"task_correlation": (cov / torch.outer(d, d)).tolist()}
