"""The machinery every gradient-level method shares (PCGrad, MGDA, CAGrad, Nash-MTL, ...).

A gradient method sees the per-task gradients ``G [k, P]`` of the ``k`` tasks that have labels in
the batch and their Gram matrix ``G G^T [k, k]``, and returns coefficients ``alpha [k]``: the
shared parameters are updated with ``alpha^T G``. Every method here is such a linear combination
(PCGrad's and GradVac's projections subtract or add multiples of the *original* gradients, so
they are too), which keeps them cheap and exact under data parallelism; a method that is not
(GradDrop) overrides :meth:`GradientWeighting.direction` instead.

Modes:

* ``parameter``: ``G`` holds the gradients of the model's ``shared_parameters()``. Task-specific
  parameters get their own task's plain gradient, penalties (``extra``) their ordinary gradient.
* ``representation``: ``G`` holds the gradients of the shared representation the model passes
  through ``share()`` (one row block per example: the MGDA-UB trick); the trunk below it is
  reached by backpropagating ``alpha^T G`` from the representation. Every parameter above it,
  shared or not (PLE's experts above its shared input, a one-gate MoE's gate), gets the plain sum
  of the task losses' gradients, as task-specific parameters do in parameter mode.

Distributed: in parameter mode the task gradients are averaged over processes before they are
combined; in representation mode each process holds other examples, so the Gram matrices are
summed instead (``G`` of the whole batch is the concatenation of the processes' blocks, each
``1/world`` of its local loss's gradient). Either way every process gets the same ``alpha`` as
one process on the whole batch.

AMP: the trainer's ``backward`` multiplies by ``ctx.loss_scale``; task gradients are taken of the
scaled losses and divided by it, so methods see true gradients.

Hooks for methods with state: :meth:`GradientWeighting.scale_losses` transforms the losses before
anything is differentiated (IMTL-L's learned loss scales); the weighting's own parameters get the
gradient of the sum of the transformed losses in both modes. ``active_tasks`` holds the names of
the rows of ``G`` while :meth:`~GradientWeighting.direction` runs (methods that keep per-task
state, e.g. GradVac's cosine targets, index it by name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from polytask.tasks import Task
from polytask.weighting.base import StepContext, Weighting


def task_gradients(losses: Sequence[Tensor], inputs: Sequence[Tensor], scale: float = 1.0) -> Tensor:
    """``[k, P]``: row t is the flattened gradient of ``losses[t]`` w.r.t. ``inputs`` (zeros where
    an input is not reached). The graph is kept for a later backward."""
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss * scale if scale != 1.0 else loss, list(inputs), retain_graph=True,
                                    allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(x)).reshape(-1) for g, x in zip(grads, inputs)]))
    g = torch.stack(rows).float()
    return g / scale if scale != 1.0 else g


def parameters_below(tensor: Tensor) -> set[int]:
    """``id``s of the leaf tensors (parameters) ``tensor`` was computed from: a walk of its
    autograd graph (a few dozen nodes for these models), done every step so it follows whatever
    path the forward pass took."""
    ids: set[int] = set()
    seen: set[object] = set()
    stack = [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf
        if variable is not None:
            ids.add(id(variable))
        stack.extend(child for child, _ in node.next_functions)
    return ids


def cosine_from_gram(gram: Tensor) -> Tensor:
    """Pairwise cosine similarities from a Gram matrix (0 where a gradient is zero)."""
    norm = gram.diagonal().clamp_min(0).sqrt()
    denom = norm[:, None] * norm[None, :]
    return torch.where(denom > 0, gram / denom.clamp_min(1e-30), torch.zeros_like(gram))


def gradient_log(names: list[str], gram: Tensor) -> dict[str, Any]:
    """What a logged step records of its task gradients: the pairwise cosines and each task's
    gradient norm (both from the Gram matrix ``G G^T`` of the per-task gradients)."""
    return {"tasks": list(names), "matrix": cosine_from_gram(gram).tolist(),
            "norms": gram.diagonal().clamp_min(0).sqrt().tolist()}


class GradientWeighting(Weighting):
    """Base class of gradient-level methods: subclasses implement :meth:`combine` (or
    :meth:`direction`)."""

    modes: ClassVar[tuple[str, ...]] = ("parameter", "representation")
    computes_task_gradients: ClassVar[bool] = True

    def __init__(self, tasks: Sequence[Task], *, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        #: names of the tasks whose gradients are the rows of ``G`` in the current step
        self.active_tasks: list[str] = []

    def scale_losses(self, losses: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
        """Transform the task losses before any gradient is taken (identity here). The method's
        gradients, the task-specific parameters' gradients and the weighting's own parameters'
        gradients are then all those of the transformed losses."""
        return losses

    def combine(self, grads: Tensor, gram: Tensor, losses: Tensor) -> Tensor:
        """``alpha [k]`` from the task gradients ``grads [k, P]`` (the local rows in representation
        mode), their whole-batch Gram matrix ``gram [k, k]`` and the losses ``[k]``."""
        raise NotImplementedError

    def direction(self, grads: Tensor, gram: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        """The update ``[P]`` and the task weights to report (``alpha``)."""
        alpha = self.combine(grads, gram, losses)
        return alpha.to(grads.dtype) @ grads, alpha

    def apply_parameter_update(self, shared: Sequence[Tensor], update: Tensor, losses: Sequence[Tensor],
                               penalty: Tensor, ctx: StepContext) -> None:
        """Parameter mode's backward: task-specific parameters (and the weighting's own) get the
        plain sum of ``losses`` (the backward stops there, so the shared trunk is not
        differentiated again), the shared ones the penalties' gradient plus ``update [P]``."""
        shared_ids = {id(p) for p in shared}
        own = [p for p in ctx.model.parameters() if p.requires_grad and id(p) not in shared_ids]
        own += [p for p in self.parameters() if p.requires_grad]
        differentiable = penalty.requires_grad
        if own:
            ctx.backward(sum(losses) + penalty, inputs=own, retain_graph=differentiable)
        if differentiable and shared:
            ctx.backward(penalty, inputs=list(shared))
        scaled = update * float(ctx.loss_scale) / ctx.accumulation
        offset = 0
        with torch.no_grad():
            for p in shared:
                n = p.numel()
                delta = scaled[offset : offset + n].view_as(p).to(p.dtype)
                if p.grad is None:
                    p.grad = delta.clone()
                else:
                    p.grad.add_(delta)
                offset += n

    # ------------------------------------------------------------------------------------------
    def backward(self, losses: Mapping[str, Tensor], extra: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        model = ctx.model
        losses = self.scale_losses(losses)
        names = ctx.active(list(losses))
        self.active_tasks = names
        device = next(iter(losses.values())).device
        weights = {n: torch.zeros((), device=device) for n in losses}
        penalty = sum(extra.values(), torch.zeros((), device=device))
        if not names:  # no task has a label in this batch: only the penalties
            ctx.backward(penalty + sum(losses.values()) * 0.0)
            return weights
        stacked = torch.stack([losses[n].detach().float() for n in names])
        scale = float(ctx.loss_scale)
        if self.mode == "parameter":
            shared = model.shared_parameters()
            grads = ctx.all_reduce(task_gradients([losses[n] for n in names], shared, scale), "mean")
            gram = grads @ grads.T
            update, alpha = self.direction(grads, gram, stacked)
            self.apply_parameter_update(shared, update, [losses[n] for n in names], penalty, ctx)
        else:
            rep = model.representation
            if rep is None:
                raise RuntimeError(f"{type(self).__name__} in representation mode: the model passed no representation "
                                   "through share() in this forward pass")
            grads = task_gradients([losses[n] for n in names], [rep], scale)
            gram = ctx.all_reduce(grads @ grads.T, "sum") / ctx.world_size**2
            update, alpha = self.direction(grads, gram, stacked)
            below = parameters_below(rep)  # they get alpha^T G through the representation
            own = [p for p in model.parameters() if p.requires_grad and id(p) not in below]
            own += [p for p in self.parameters() if p.requires_grad]  # e.g. IMTL-L's loss scales
            if own:
                ctx.backward(sum(losses[n] for n in names), inputs=own, retain_graph=True)
            if extra:
                ctx.backward(penalty, retain_graph=True)
            ctx.backward(rep, gradient=update.view_as(rep).to(rep.dtype))
        if ctx.record:
            ctx.log["cosine"] = gradient_log(names, gram)
        for n, a in zip(names, alpha):
            weights[n] = a.detach()
        return weights
