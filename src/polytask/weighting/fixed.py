"""Fixed per-task weights: ``sum_t w_t L_t`` with ``w_t`` set by the user."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from polytask.errors import ConfigError
from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.base import StepContext, Weighting


@WEIGHTINGS.register("fixed")
class Fixed(Weighting):
    """Constant task weights, from ``weights: {task: w}`` or each task's ``weight`` field."""

    def __init__(self, tasks: Sequence[Task], *, weights: dict[str, float] | None = None, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        given = dict(weights or {})
        unknown = set(given) - set(self.task_names)
        if unknown:
            raise ConfigError(f"weighting.weights: unknown task(s) {', '.join(sorted(unknown))}; tasks: {', '.join(self.task_names)}")
        values = [float(given.get(t.name, t.weight)) for t in tasks]
        if any(v < 0 for v in values):
            raise ConfigError("weighting.weights: weights must be >= 0")
        self.register_buffer("values", torch.tensor(values), persistent=False)

    def weights(self, losses: Mapping[str, Tensor], ctx: StepContext | None = None) -> dict[str, Tensor]:
        return {name: self.values[i] for i, name in enumerate(self.task_names) if name in losses}
