"""GradNorm (Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for Adaptive
Loss Balancing in Deep Multitask Networks", ICML 2018).

Task weights ``w = T softmax(xi)`` (``xi`` an ``nn.Parameter`` initialised to 0, so every ``w_i``
starts at 1 and ``sum_i w_i = T`` always: the paper's renormalisation, done implicitly as in
LibMTL). With ``W`` the parameters of the model's last shared layer
(``MultiTaskModel.last_shared_parameters()``)::

    G_i      = ||grad_W (w_i L_i)|| = w_i ||grad_W L_i||        (w_i > 0)
    r_i      = L~_i / mean_j L~_j,  L~_i = L_i / L_i(0)
    L_grad   = sum_i | G_i - stopgrad(mean_j G_j * r_i^alpha) |

``L_grad`` is differentiated with respect to ``xi`` only; the network gets the gradient of
``sum_i stopgrad(w_i) L_i`` (plus the penalty terms). Both go in the trainer's optimiser step.
``G_i`` is linear in ``w_i``, so the norms ``||grad_W L_i||`` are taken without a double
backward. ``L_i(0)`` is task i's loss at the first step in which it had labels (LibMTL uses the
first epoch's average loss instead and trains the first epoch with equal weights).

Default ``alpha = 1.5`` (LibMTL); larger alpha pulls harder toward equal training rates.
Mode ``loss`` only.

Masking: a task without labelled rows in the (global) batch is left out of the mean, of the ratios
and of ``L_grad`` for that step, and is reported with weight 0 (its ``w_i`` still counts in the
sum T). Data parallelism: the per-task gradients of ``W`` and the losses are averaged over the
processes first, so every process computes the same ``L_grad``. A model without shared parameters
falls back to all of its trainable parameters for ``W``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.errors import ConfigError
from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.base import StepContext, Weighting
from polytask.weighting.gradient import task_gradients


def last_shared_layer(model: nn.Module) -> list[Tensor]:
    """``W`` for GradNorm: the model's ``last_shared_parameters()``, else all trainable parameters."""
    getter = getattr(model, "last_shared_parameters", None)
    params = list(getter()) if getter is not None else []
    return params or [p for p in model.parameters() if p.requires_grad]


def gradnorm_loss(logits: Tensor, norms: Tensor, ratios: Tensor, index: Tensor, alpha: float) -> Tensor:
    """``L_grad`` for the tasks ``index``: ``norms[j] = ||grad_W L_{index[j]}||``, ``ratios[j] = L~``."""
    w = len(logits) * torch.softmax(logits, dim=0)
    g = w[index] * norms
    r = ratios / ratios.mean().clamp_min(torch.finfo(ratios.dtype).tiny)
    target = (g.mean() * r.pow(alpha)).detach()
    return (g - target).abs().sum()


@WEIGHTINGS.register("gradnorm")
class GradNorm(Weighting):
    """Learn weights that equalise the tasks' gradient norms at the last shared layer, scaled by
    their relative training rates (Chen et al., ICML 2018)."""

    def __init__(self, tasks: Sequence[Task], *, alpha: float = 1.5, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        if alpha < 0:
            raise ConfigError("weighting.alpha: must be >= 0")
        self.alpha = float(alpha)
        k = len(self.task_names)
        self.logits = nn.Parameter(torch.zeros(k))
        #: L_i(0): each task's loss at the first step it had labels (NaN until then)
        self.register_buffer("initial_losses", torch.full((k,), float("nan")))

    def task_weights(self) -> Tensor:
        """``T softmax(xi)``."""
        return len(self.task_names) * torch.softmax(self.logits, dim=0)

    def backward(self, losses: Mapping[str, Tensor], extra: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        names = list(losses)
        device = self.logits.device
        w = self.task_weights().detach()
        active = ctx.active(names)
        penalty = sum(extra.values(), torch.zeros((), device=device))
        reported = {n: torch.zeros((), device=device) for n in names}
        if not active:  # nothing labelled: only the penalties
            ctx.backward(penalty + sum(losses.values()) * 0.0)
            return reported
        index = torch.tensor([self.task_names.index(n) for n in active], device=device)
        with torch.no_grad():
            current = ctx.all_reduce(torch.stack([losses[n].detach().float() for n in active]), "mean")
            initial = self.initial_losses[index]
            initial = torch.where(torch.isnan(initial), current, initial)
            self.initial_losses[index] = initial
            ratios = current / initial.clamp_min(torch.finfo(current.dtype).tiny)
        layer = last_shared_layer(ctx.model)
        grads = ctx.all_reduce(task_gradients([losses[n] for n in active], layer, float(ctx.loss_scale)), "mean")
        norms = grads.norm(dim=1).to(device)
        ctx.backward(gradnorm_loss(self.logits, norms, ratios, index, self.alpha), inputs=[self.logits])
        ctx.backward(sum((w[i] * losses[n] for i, n in zip(index.tolist(), active)), penalty))
        for i, n in zip(index.tolist(), active):
            reported[n] = w[i]
        return reported

    def state(self) -> dict[str, Any]:
        return {"weights": dict(zip(self.task_names, self.task_weights().detach().float().tolist()))}
