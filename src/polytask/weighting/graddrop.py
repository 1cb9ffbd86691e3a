"""GradDrop, gradient sign dropout (Chen et al., "Just Pick a Sign: Optimizing Deep Multitask
Models with Gradient Sign Dropout", NeurIPS 2020).

At every coordinate of the gradient the tasks vote on a sign. With the positive sign purity

    P = 1/2 (1 + sum_t g_t / sum_t |g_t|)          (coordinate-wise, in [0, 1]; 1/2 where all g_t = 0)

and ``U ~ Uniform(0, 1)`` drawn per coordinate, task t keeps its coordinate where
``(P > U and g_t > 0)`` or ``(P < U and g_t < 0)``, and the update is ``sum_t`` of the kept parts. So
each coordinate keeps only the positive or only the negative task gradients, the positive ones
with probability ``P``: where every task agrees (``P`` is 0 or 1) nothing is dropped, and the
expected update's sign follows the sum of the gradients. (The tie ``P = U``, of probability 0,
counts as ``P < U`` here, so that one side is always kept: ``U`` is drawn from [0, 1).)

Not a linear combination of the task gradients (the mask is per coordinate), so this overrides
:meth:`~polytask.weighting.gradient.GradientWeighting.direction`; the weights reported are ones.
``U`` comes from a generator seeded with ``seed`` (the same sequence in every process, so in
parameter mode every process draws the same mask).

The paper's general form has a monotone ``f(P)`` (the identity here, as in its experiments) and
per-task leak coefficients (0 here, i.e. full dropping), and for a layer applied to a batch
(recalled, not checked) weights the gradient by the sign of the input before summing over the
batch; this module uses the plain per-coordinate form above.

Modes: ``representation`` (default; the paper applies GradDrop as a layer on the shared
activations, here every coordinate of the representation of every example) and ``parameter``
(every coordinate of the shared parameters' gradient).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.gradient import GradientWeighting


def graddrop_update(grads: Tensor, uniform: Tensor) -> Tensor:
    """``sum_t M_t * g_t`` for task gradients ``grads [k, P]`` and one uniform draw per coordinate."""
    total = grads.sum(0)
    mass = grads.abs().sum(0)
    purity = torch.where(mass > 0, 0.5 * (1.0 + total / mass.clamp_min(torch.finfo(grads.dtype).tiny)),
                         torch.full_like(total, 0.5))
    positive = (purity > uniform)[None, :]  # U in [0, 1): P = 1 always keeps the positive side ...
    keep = (positive & (grads > 0)) | (~positive & (grads < 0))  # ... and P = 0 the negative side
    return (grads * keep).sum(0)


@WEIGHTINGS.register("graddrop")
class GradDrop(GradientWeighting):
    """Per coordinate, keep only the positive or only the negative task gradients, the positive
    ones with probability equal to their sign purity (Chen et al., 2020). Modes
    ``representation`` (default, as the paper) and ``parameter``; ``seed`` fixes the draws."""

    modes = ("representation", "parameter")

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        self.seed = seed
        self.generator: torch.Generator | None = None

    def direction(self, grads: Tensor, gram: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        if self.generator is None or self.generator.device != grads.device:
            self.generator = torch.Generator(device=grads.device).manual_seed(self.seed)
        uniform = torch.rand(grads.shape[1], generator=self.generator, device=grads.device, dtype=grads.dtype)
        return graddrop_update(grads, uniform), torch.ones(grads.shape[0], device=grads.device)
