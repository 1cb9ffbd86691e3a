"""IMTL, impartial multi-task learning (Liu et al., "Towards Impartial Multi-task Learning",
ICLR 2021).

**IMTL-G** (gradient balance) looks for the update ``d = sum_t alpha_t g_t`` with ``sum_t alpha_t = 1``
whose projections onto every *unit* task gradient ``u_t = g_t / ||g_t||`` are equal,
``d . u_1 = d . u_t`` for all t. With ``D`` the rows ``g_1 - g_t`` and ``U`` the rows ``u_1 - u_t``
(t = 2..k), ``d = g_1 - alpha_{2:k} D`` and the conditions ``d U^T = 0`` give the closed form

    alpha_{2:k} = g_1 U^T (D U^T)^{-1},     alpha_1 = 1 - sum_{t>=2} alpha_t.

All of it is inner products, taken from the Gram matrix ``M`` (``n_t = sqrt(M_tt)``):
``(g_1 U^T)_t = M_11/n_1 - M_1t/n_t`` and ``(D U^T)_st = M_11/n_1 - M_1t/n_t - M_s1/n_1 + M_st/n_t``.
A singular system (e.g. two parallel gradients) is solved in the least-squares sense; a zero
gradient counts with ``n_t = 1`` (it has no direction to be impartial to).

**IMTL-L** (loss balance, ``loss_balance=True``, the default): every task loss is replaced by
``e^{s_t} L_t - s_t`` with a learned ``s_t`` (initialised to 0, an ``nn.Parameter`` of this module
trained by the model's optimiser). Its gradient in ``s_t``, ``e^{s_t} L_t - 1``, drives the scaled
losses towards 1. IMTL-G then runs on the gradients of the scaled losses, as in the paper's full
IMTL and LibMTL; the weights reported are the coefficients on the raw task gradients,
``alpha_t e^{s_t}``.

Modes: ``representation`` (default; the paper and LibMTL apply IMTL-G to the gradients of the
shared representation, which costs one backward through the heads per task) and ``parameter``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.base import StepContext
from polytask.weighting.gradient import GradientWeighting


def imtl_g_weights(gram: Tensor) -> Tensor:
    """``alpha [k]`` (float64, CPU) of IMTL-G's closed form, from the Gram matrix."""
    m = gram.detach().double().cpu()
    k = m.shape[0]
    if k == 1:
        return torch.ones(1, dtype=torch.float64)
    norms = m.diagonal().clamp_min(0).sqrt()
    norms = torch.where(norms > 0, norms, torch.ones_like(norms))
    gu = m / norms[None, :]  # gu[i, j] = g_i . u_j
    rhs = gu[0, 0] - gu[0, 1:]  # g_1 . (u_1 - u_t)
    a = gu[0, 0] - gu[0, 1:][None, :] - gu[1:, 0][:, None] + gu[1:, 1:]  # (g_1 - g_s) . (u_1 - u_t)
    # alpha_{2:k} a = rhs  <=>  a^T alpha_{2:k}^T = rhs^T
    rest = torch.linalg.lstsq(a.T, rhs[:, None], driver="gelsd").solution[:, 0]
    return torch.cat([(1.0 - rest.sum())[None], rest])


@WEIGHTINGS.register("imtl")
class IMTL(GradientWeighting):
    """Impartial MTL: equal projections of the update onto every unit task gradient (IMTL-G),
    plus learned loss scales ``e^{s_t} L_t - s_t`` (IMTL-L) (Liu et al., 2021).

    ``loss_balance`` (True) turns IMTL-L on. Modes ``representation`` (default, as the paper) and
    ``parameter``.
    """

    modes = ("representation", "parameter")

    def __init__(self, tasks: Sequence[Task], *, loss_balance: bool = True, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        self.loss_balance = loss_balance
        if loss_balance:
            self.log_scale = nn.Parameter(torch.zeros(len(self.task_names)))

    def scale_losses(self, losses: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
        if not self.loss_balance:
            return losses
        index = {n: i for i, n in enumerate(self.task_names)}
        out = {}
        for name, loss in losses.items():
            s = self.log_scale[index[name]].to(loss.dtype)
            out[name] = s.exp() * loss - s
        return out

    def combine(self, grads: Tensor, gram: Tensor, losses: Tensor) -> Tensor:
        return imtl_g_weights(gram).to(device=grads.device, dtype=grads.dtype)

    def backward(self, losses: Mapping[str, Tensor], extra: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        weights = super().backward(losses, extra, ctx)
        if self.loss_balance:  # alpha was applied to the scaled losses' gradients e^{s_t} g_t
            scale = self.log_scale.detach().exp()
            weights = {n: w * scale[self.task_names.index(n)].to(w) for n, w in weights.items()}
        return weights

    def state(self) -> dict[str, float]:
        if not self.loss_balance:
            return {}
        return {f"log_scale.{n}": float(v) for n, v in zip(self.task_names, self.log_scale.detach().cpu())}
