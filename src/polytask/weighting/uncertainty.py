"""Uncertainty weighting (Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
Losses for Scene Geometry and Semantics", CVPR 2018).

Each task t has a learned log-variance ``s_t = log sigma_t^2`` (an ``nn.Parameter``, trained by the
trainer's optimiser together with the model). The loss is the sum over tasks of the paper's forms:

* regression (Gaussian likelihood): ``1/2 exp(-s_t) L_t + 1/2 s_t``
* classification (binary, multiclass; scaled softmax): ``exp(-s_t) L_t + 1/2 s_t``

``form: regression`` applies the regression form to every task (the common T-task implementation,
e.g. nash-mtl's ``sum_t 1/2 (exp(-s_t) L_t + s_t)``). For a constant loss ``L`` the optimum is
``s* = log L`` (regression form) and ``s* = log 2L`` (classification form).

Defaults: ``init = 0`` (``s_t`` starts at 0, i.e. sigma = 1; LibMTL starts at -0.5), ``form = auto``.

The reported weights are the factors on the losses, ``exp(-s_t)/2`` or ``exp(-s_t)``. A task with no
labelled row in the (global) batch contributes nothing, its ``s_t`` term included (so ``s_t`` gets
no gradient that step), and is reported with weight 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.base import StepContext, Weighting

@WEIGHTINGS.register("uncertainty")
class Uncertainty(Weighting):
    """Learned homoscedastic task uncertainty: ``c_t exp(-s_t) L_t + s_t/2`` (Kendall et al., CVPR 2018).

    ``c_t`` is the task kind's ``uncertainty_factor`` (``form: auto``: 1/2 for a Gaussian
    likelihood such as regression, 1 for classification-style likelihoods), or 1/2 for all
    (``form: regression``). ``init`` is the starting log-variance ``s_t``.
    """

    def __init__(self, tasks: Sequence[Task], *, init: float = 0.0, form: Literal["auto", "regression"] = "auto",
                 mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        self.form = form
        self.log_vars = nn.Parameter(torch.full((len(self.task_names),), float(init)))
        factors = [t.spec.uncertainty_factor if form == "auto" else 0.5 for t in tasks]
        self.register_buffer("factors", torch.tensor(factors), persistent=False)

    def backward(self, losses: Mapping[str, Tensor], extra: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        names = list(losses)
        index = [self.task_names.index(n) for n in names]
        s = self.log_vars[index]
        device = s.device
        flags = ctx.active_flags(names, device)
        stacked = torch.stack([losses[n] for n in names]).float()
        w = self.factors[index] * torch.exp(-s)
        terms = torch.where(flags, w * stacked + 0.5 * s, torch.zeros_like(stacked))
        total = terms.sum()
        for term in extra.values():
            total = total + term
        ctx.backward(total)
        reported = torch.where(flags, w.detach(), torch.zeros_like(w))
        return {n: reported[i] for i, n in enumerate(names)}

    def state(self) -> dict[str, Any]:
        return {"log_var": dict(zip(self.task_names, self.log_vars.detach().float().tolist()))}
