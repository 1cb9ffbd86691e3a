"""The contract every loss-weighting or gradient method fulfils.

A weighting receives the per-task losses of a step (and the model's penalty terms) and is
responsible for the backward pass: loss-level methods weight the scalars and call backward once;
gradient-level methods (PCGrad, MGDA, ... in their own modules) compute per-task gradients of the
shared parameters or of the shared representation and write the combined gradient. Either way
it returns the task weights it applied, for the log.

It never knows which architecture it trains: it sees the model only through
``shared_parameters()`` and the representation the model passes through ``share()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polytask.errors import ConfigError
from polytask.tasks import Task

#: What a method differentiates: only the combined loss, per-task gradients of the shared
#: parameters, or per-task gradients of the shared representation.
MODES = ("loss", "parameter", "representation")


@dataclass
class StepContext:
    """What the trainer hands a weighting each step.

    ``backward(tensor)`` runs backward through the trainer's machinery (AMP loss scaling, gradient
    accumulation); ``masks`` are the batch's label masks: a task whose mask is all False has a
    zero loss and must be left out of a gradient combination (see :meth:`label_counts`).
    """

    model: nn.Module
    backward: Callable[[Tensor], None]
    masks: Mapping[str, Tensor]
    step: int = 0

    def label_counts(self) -> dict[str, Tensor]:
        return {name: mask.sum() for name, mask in self.masks.items()}


class Weighting(nn.Module):
    """Base class: subclasses implement :meth:`weights` (loss-level) or override :meth:`backward`.

    Weightings are modules so learned quantities (e.g. uncertainty log-variances) are trained by
    the same optimiser as the model.
    """

    #: modes this method supports; the first is its default
    modes: ClassVar[tuple[str, ...]] = ("loss",)

    def __init__(self, tasks: Sequence[Task], *, mode: str | None = None) -> None:
        super().__init__()
        self.task_names = [t.name for t in tasks]
        self.mode = mode or self.modes[0]
        if self.mode not in self.modes:
            raise ConfigError(
                f"weighting.mode: {type(self).__name__} supports {', '.join(self.modes)}, not {self.mode!r}"
            )

    def setup(self, model: nn.Module) -> None:
        """Called once before training (gradient methods locate shared parameters here)."""
        if self.mode == "representation":
            model.capture_representation = True

    def weights(self, losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Loss weight of every task for this step."""
        raise NotImplementedError

    def backward(self, losses: Mapping[str, Tensor], extra: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        """Backpropagate ``sum_t w_t L_t + sum(extra)``; return the weights used."""
        w = self.weights(losses)
        total = sum((w[name] * loss for name, loss in losses.items()), start=torch.zeros((), device=_device(losses)))
        for term in extra.values():
            total = total + term
        ctx.backward(total)
        return w

    def on_epoch_end(self, epoch: int, train_losses: Mapping[str, float]) -> None:
        """Epoch-level state updates (e.g. DWA's loss ratios)."""

    def state(self) -> dict[str, Any]:
        """JSON-able state for the log."""
        return {}


def _device(losses: Mapping[str, Tensor]) -> torch.device:
    return next(iter(losses.values())).device
