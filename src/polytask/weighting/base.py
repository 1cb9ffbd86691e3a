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

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polytask.errors import ConfigError
from polytask.tasks import Task

#: What a method differentiates: only the combined loss, per-task gradients of the shared
#: parameters, or per-task gradients of the shared representation.
MODES = ("loss", "parameter", "representation")


def plain_backward(tensor: Tensor, gradient: Tensor | None = None, inputs: Sequence[Tensor] | None = None,
                   retain_graph: bool | None = None) -> None:
    """``tensor.backward`` with no loss scaling or accumulation (what a trainer-less caller uses)."""
    tensor.backward(gradient, inputs=inputs, retain_graph=retain_graph)


@dataclass
class StepContext:
    """What the trainer hands a weighting each step.

    ``backward(tensor, gradient=None, inputs=None)`` runs backward through the trainer's machinery
    (AMP loss scaling, division by the ``accumulation`` count); ``loss_scale`` is the AMP factor
    it applies (a gradient method that differentiates losses itself divides by it, see
    :mod:`polytask.weighting.gradient`). ``masks`` are the batch's label masks: a task with no
    labelled row has a zero loss and is left out of any combination (see :meth:`active`).
    ``all_reduce(tensor, op)`` sums (``op="sum"``) or averages (``"mean"``) a tensor over the
    processes of a distributed run (identity in a single process). ``record`` is True on the steps
    whose task-gradient cosines go into the log; a method that computes task gradients anyway puts
    them in ``log["cosine"]``.
    """

    model: nn.Module
    backward: Callable[..., None] = plain_backward
    masks: Mapping[str, Tensor] = field(default_factory=dict)
    step: int = 0
    loss_scale: float = 1.0
    all_reduce: Callable[[Tensor, str], Tensor] = field(default=lambda t, op="sum": t)
    world_size: int = 1
    accumulation: int = 1
    record: bool = False
    log: dict[str, Any] = field(default_factory=dict)

    def label_counts(self) -> dict[str, Tensor]:
        """Labelled rows per task in the whole (all-process) batch."""
        names = list(self.masks)
        counts = self.all_reduce(torch.stack([self.masks[n].sum() for n in names]).float(), "sum")
        return dict(zip(names, counts))

    def active(self, names: Sequence[str]) -> list[str]:
        """The tasks among ``names`` with at least one labelled row in this (global) batch."""
        counts = self.label_counts()
        present = [n for n in names if n in counts]
        flags = torch.stack([counts[n] > 0 for n in present]).tolist() if present else []
        return [n for n, f in zip(present, flags) if f] + [n for n in names if n not in counts]

    def active_flags(self, names: Sequence[str], device: torch.device | str | None = None) -> Tensor:
        """Bool tensor ``[len(names)]``, True for the tasks :meth:`active` returns, computed on the
        device without a host synchronisation (for loss-level methods on the hot path)."""
        counts = self.label_counts() if any(n in self.masks for n in names) else {}
        if device is None:
            device = next(iter(counts.values())).device if counts else "cpu"
        if not names:
            return torch.zeros(0, dtype=torch.bool, device=device)
        yes = torch.ones((), dtype=torch.bool, device=device)
        return torch.stack([(counts[n] > 0).to(device) if n in counts else yes for n in names])


class Weighting(nn.Module):
    """Base class: subclasses implement :meth:`weights` (loss-level) or override :meth:`backward`.

    Weightings are modules so learned quantities (e.g. uncertainty log-variances) are trained by
    the same optimiser as the model.
    """

    #: modes this method supports; the first is its default
    modes: ClassVar[tuple[str, ...]] = ("loss",)
    #: True for methods that compute per-task gradients themselves (they log gradient cosines;
    #: for the others the trainer measures them every ``log_every`` steps)
    computes_task_gradients: ClassVar[bool] = False
    #: True for methods that need the batch's losses again after the optimiser step (FAMO): the
    #: trainer then calls :meth:`after_step` with a closure that recomputes them
    wants_losses_after_step: ClassVar[bool] = False
    #: Python-side attributes (outside tensors and generators) that change during training and
    #: that :meth:`resume_state` must carry for a resumed run to continue bit for bit
    resume_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, tasks: Sequence[Task], *, mode: str | None = None) -> None:
        super().__init__()
        self.task_names = [t.name for t in tasks]
        self.mode = mode or self.modes[0]
        if self.mode not in self.modes:
            raise ConfigError(
                f"weighting.mode: {type(self).__name__} supports {', '.join(self.modes)}, not {self.mode!r}"
            )

    def setup(self, model: nn.Module) -> None:
        """Called before training (and again after a model changes its structure): checks that
        the model has what the mode differentiates (a ConfigError naming both otherwise) and, in
        representation mode, asks the model to keep the representation it passes to ``share``."""
        shared = model.shared_parameters() if hasattr(model, "shared_parameters") else []
        if self.mode == "parameter" and not shared:
            raise ConfigError(f"weighting {_name(self)!r} needs shared parameters; model {_name(model)!r} shares none")
        if self.mode == "representation":
            if not shares_representation(model):
                other = " (weighting.mode: parameter uses its shared parameters)" if (
                    "parameter" in self.modes and shared) else ""
                raise ConfigError(f"weighting {_name(self)!r} in representation mode needs a shared representation; "
                                  f"model {_name(model)!r} passes none through share(){other}")
            model.capture_representation = True

    def weights(self, losses: Mapping[str, Tensor], ctx: StepContext | None = None) -> dict[str, Tensor]:
        """Loss weight of every task for this step (``ctx``: which tasks are labelled, the
        all-reduce of a distributed run; None outside a training step)."""
        raise NotImplementedError

    def backward(self, losses: Mapping[str, Tensor], extra: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        """Backpropagate ``sum_t w_t L_t + sum(extra)``; return the weights used."""
        w = self.weights(losses, ctx)
        total = sum((w[name] * loss for name, loss in losses.items()), start=torch.zeros((), device=_device(losses)))
        for term in extra.values():
            total = total + term
        ctx.backward(total)
        return w

    def after_step(self, losses: Mapping[str, Tensor], recompute: Callable[[], Mapping[str, Tensor]], ctx: StepContext) -> None:
        """After the optimiser step (only if :attr:`wants_losses_after_step`): ``losses`` as used
        in the step, ``recompute()`` the same batch's losses under the updated parameters."""

    def on_epoch_end(self, epoch: int, train_losses: Mapping[str, float]) -> None:
        """Epoch-level state updates (e.g. DWA's loss ratios)."""

    def state(self) -> dict[str, Any]:
        """JSON-able state for the log."""
        return {}

    def resume_state(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly where this one stands, as plain
        picklable data: the state dict (parameters and buffers, on the CPU), the state of every
        ``torch.Generator`` attribute (the seeded draws of RLW, PCGrad, GradDrop, ...) and the
        :attr:`resume_attributes`. A method keeping more overrides this and
        :meth:`load_resume_state`."""
        generators = {name: (str(value.device), value.get_state()) for name, value in vars(self).items()
                      if isinstance(value, torch.Generator)}
        python = {name: copy.deepcopy(_cpu(getattr(self, name))) for name in self.resume_attributes}
        return {"state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
                "generators": generators, "python": python}

    def load_resume_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`resume_state` returned (on this module's device)."""
        self.load_state_dict(state["state_dict"])
        for name, (gen_device, gen_state) in state.get("generators", {}).items():
            current = getattr(self, name, None)
            if not isinstance(current, torch.Generator) or str(current.device) != gen_device:
                current = torch.Generator(device=gen_device)  # one made lazily (GradDrop's)
                setattr(self, name, current)
            current.set_state(gen_state)
        device = next((t.device for t in [*self.parameters(), *self.buffers()]), torch.device("cpu"))
        for name, value in state.get("python", {}).items():
            setattr(self, name, _to(value, device))


def shares_representation(model: nn.Module) -> bool:
    """Whether ``model`` passes one representation that every task reads through ``share()``.

    A model declares it with a ``has_shared_representation`` attribute; without one, a model with
    shared modules is taken to share a representation and one without (independent networks,
    sluice networks' mixing weights) not. Representation-mode weightings refuse a model without
    one; the model contract test checks that a model that has one really passes it."""
    declared = getattr(model, "has_shared_representation", None)
    if declared is not None:
        return bool(declared)
    return bool(model.shared_modules()) if hasattr(model, "shared_modules") else False


def _name(obj: nn.Module) -> str:
    """The name ``obj``'s class is registered under (a model or a weighting), else the class name."""
    from polytask.registry import MODELS, WEIGHTINGS

    for registry in (WEIGHTINGS, MODELS):
        for name, cls in registry.items():
            if type(obj) is cls:
                return name
    return type(obj).__name__


def active_flags(ctx: StepContext | None, names: Sequence[str], device: torch.device | str) -> Tensor:
    """:meth:`StepContext.active_flags`, or all True without a step context."""
    if ctx is None:
        return torch.ones(len(names), dtype=torch.bool, device=device)
    return ctx.active_flags(names, device)


def mean_over_processes(ctx: StepContext | None, values: Tensor) -> Tensor:
    return values if ctx is None else ctx.all_reduce(values, "mean")


def masked_softmax(logits: Tensor, flags: Tensor) -> Tensor:
    """``softmax`` over the entries where ``flags`` is True, 0 elsewhere (all 0, not NaN, when no
    entry is flagged)."""
    if logits.numel() == 0:
        return logits
    top = torch.where(flags, logits, torch.full_like(logits, float("-inf"))).max().detach()
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    # exp of 0 (not of the logit) where unflagged: no overflow there, so no NaN in the backward
    e = torch.where(flags, torch.exp(torch.where(flags, logits - top, torch.zeros_like(logits))), torch.zeros_like(logits))
    return e / e.sum().clamp_min(torch.finfo(e.dtype).tiny)


def _cpu(value: Any) -> Any:
    return _to(value, torch.device("cpu"))


def _to(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (in lists, tuples, dicts) moved to ``device``."""
    if isinstance(value, Tensor):
        return value.detach().to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _device(losses: Mapping[str, Tensor]) -> torch.device:
    return next(iter(losses.values())).device
