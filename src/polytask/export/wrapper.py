"""The module that is exported: positional inputs per feature group, one output per task.

A model reads a features dict and returns ``{task: raw output}``; tracers and ONNX want positional
tensors in and a tuple out. :class:`ExportWrapper` takes the groups in the order of
:func:`polytask.export.inputs.input_groups` and returns one tensor per task, in the run's task
order: what :meth:`polytask.run.Run.predict` returns (each task kind's ``predict``: P(y=1) for
binary, values in the label's units for regression, class probabilities for multiclass), or with
``raw=True`` the model's raw outputs (logits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polytask.tasks import Task


class ExportWrapper(nn.Module):
    """``forward(*inputs) -> tuple`` of one output per task (see the module docstring)."""

    def __init__(self, model: nn.Module, tasks: Sequence[Task], keys: Sequence[str], *, raw: bool = False) -> None:
        super().__init__()
        self.model = model
        self.tasks = list(tasks)
        self.keys = list(keys)
        self.raw = raw

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        out = self.model(dict(zip(self.keys, inputs)))
        if self.raw:
            return tuple(out[t.name].float() for t in self.tasks)
        return tuple(t.predict(out[t.name]) for t in self.tasks)

    @torch.no_grad()
    def reference(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        """The eager outputs the exported model must reproduce."""
        return list(self(*inputs))
