"""The contract every architecture fulfils.

A model maps encoded features to ``{task: raw output}`` (logits, not probabilities). It says
which parameters are shared across tasks (gradient-based weightings act on those), may expose a
shared representation (for representation-gradient methods such as MGDA-UB), may add penalties
that are part of the method (``regularization``), and may report diagnostics (gate weights).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from polytask.encoders.base import PerTaskInputs, check_task_levels, make_input, read_out

from polytask.data.schema import InputSpec
from polytask.nn.image_input import ImageInputs, apply_image_inputs
from polytask.tasks import Task


class MultiTaskModel(nn.Module):
    """Base class of registered architectures.

    Subclasses build their layers in ``__init__(input_spec, tasks, **hyperparameters)`` (every
    hyperparameter a keyword with a default and a type hint: the signature is the config schema)
    and implement :meth:`forward`. They list their shared parts in :meth:`shared_modules` and
    pass their shared representation through :meth:`share`.

    Image features (``input_spec.images``) arrive as uint8 pixels ``dense:<name>``
    ``[B, C, H, W]``: when there are any, ``__init__`` builds an
    :class:`~polytask.nn.image_input.ImageInputs` (``self.image_inputs``) and registers it as a
    forward pre-hook, so ``forward`` (and every encoder it calls) sees them as normalised float
    ``[B, C, H, W]``, flipped and pad-cropped at random in training mode only. Every caller of
    the model -- the trainer, evaluation, prediction, data-parallel training -- gets this without
    doing anything; a subclass needs nothing either. Float pixels passed in directly are taken
    to be in [0, 1] units (uint8 ones in 0..255).
    """

    def __init__(self, input_spec: InputSpec, tasks: Sequence[Task]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a model needs at least one task")
        self.input_spec = input_spec
        self.tasks = list(tasks)
        self.task_names = [t.name for t in tasks]
        self.capture_representation = False
        self.representation: Tensor | None = None
        #: the text feature whose token positions the input rows follow (see polytask.encoders)
        self.position_feature: str | None = None
        if input_spec.images:  # uint8 pixels -> normalised (augmented) float before every forward
            self.image_inputs = ImageInputs(input_spec.images)
            self.register_forward_pre_hook(apply_image_inputs, with_kwargs=True)

    #: whether :meth:`share` marks one tensor every task reads (representation-mode weightings
    #: such as MGDA-UB need it). None: True when :meth:`shared_modules` is non-empty; a model
    #: whose shared parts are not one representation (cross-stitch units) sets False.
    has_shared_representation: bool | None = None

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    # -- inputs and outputs ---------------------------------------------------------------------
    def build_input(
        self,
        encoder: str = "tabular",
        encoder_params: Mapping[str, Any] | None = None,
        *,
        embedding_dim: int = 4,
        copies: int | None = None,
        spec: InputSpec | None = None,
    ) -> nn.Module:
        """The model's input encoder (``copies``: that many independent ones, stacked as
        ``[copies, N, d]``), chosen by name from the encoder registry. Records where the rows come
        from so :meth:`read_out` can give token-level tasks their token rows, and checks that
        every token-level task has them."""
        spec = spec if spec is not None else self.input_spec
        if copies is None:
            module = make_input(spec, encoder, embedding_dim=embedding_dim, params=encoder_params)
        else:
            module = PerTaskInputs(spec, copies, embedding_dim, encoder, encoder_params)
        self.position_feature = module.position_feature
        check_task_levels(self.tasks, self.position_feature, encoder)
        return module

    def read_out(self, outputs: dict[str, Tensor], features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Head outputs per input row -> per task: the sentence row for row-level tasks and
        ``[B, L, ...]`` token rows for token-level tasks (unchanged when rows are examples)."""
        return read_out(outputs, self.tasks, features, self.position_feature)

    # -- what weightings and diagnostics use --------------------------------------------------
    def shared_modules(self) -> list[nn.Module]:
        """Modules whose parameters every task's loss reaches (empty for independent networks)."""
        return []

    def shared_parameters(self) -> list[nn.Parameter]:
        seen: set[int] = set()
        params = []
        for m in self.shared_modules():
            for p in m.parameters():
                if id(p) not in seen and p.requires_grad:
                    seen.add(id(p))
                    params.append(p)
        return params

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The parameters ``W`` of the last shared layer (GradNorm balances the task gradient norms
        there). Default: the direct parameters of the last submodule (in registration order) that
        holds any, inside the last of :meth:`shared_modules`; :meth:`shared_parameters` when there
        are no shared modules (empty for independent networks). A model whose last shared layer is
        something else overrides this."""
        modules = self.shared_modules()
        if not modules:
            return self.shared_parameters()
        holders = [m for m in modules[-1].modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
        if not holders:
            return self.shared_parameters()
        return [p for p in holders[-1].parameters(recurse=False) if p.requires_grad]

    def share(self, representation: Tensor) -> Tensor:
        """Mark the shared representation; kept only while a weighting asked for it."""
        if self.capture_representation:
            self.representation = representation
        return representation

    def loss_task_names(self) -> list[str]:
        """The tasks whose losses are trained. A model may predict a task it is not trained on
        directly (ESMM predicts pCVR on every impression but learns it only through pCTCVR);
        such a task is evaluated and predicted, not put in the loss."""
        return list(self.task_names)

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimiser; a group may carry ``lr_scale`` (e.g. cross-stitch
        units learn 100x faster than the networks they connect)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def regularization(self) -> dict[str, Tensor]:
        """Penalties that belong to the method (e.g. soft sharing's parameter distance)."""
        return {}

    def begin_task(self, name: str | None) -> None:
        """Called by a training schedule that trains one task at a time (``train.schedule: jmt``)
        before the first step on task ``name``; None when the schedule goes back to training
        every task at once. A model whose method depends on which task is being trained
        (JMT's successive regularisation snapshots the lower layers here) overrides it."""

    def diagnostics(self) -> dict[str, Any]:
        """Cheap, JSON-able facts about the last forward pass (e.g. mean gate weights)."""
        return {}

    # -- export -----------------------------------------------------------------------------------
    def export_refusal(self, format: str) -> str | None:
        """Why this model cannot be exported to ``format`` (``onnx`` or ``torchscript``), in one
        line; None when it can. ``polytask export`` asks before exporting and refuses with this
        line; a model that can export needs nothing (the exporter still checks the exported model
        against this one on generated batches and refuses when they differ)."""
        return None

    # -- models whose structure changes while they train (FAFS) ------------------------------
    def adapt(self, epoch: int, probe: Callable[[], Tensor]) -> bool:
        """Called by the trainer after every epoch. ``probe()`` returns per-example losses
        ``[N, T]`` on held-out rows (NaN where a task is unlabelled). Return True when parameters
        were added or removed: the trainer then rebuilds its optimiser, re-runs the weighting's
        setup and restarts early stopping for the new structure."""
        return False

    def structure(self) -> dict[str, Any]:
        """Constructor parameters that rebuild the current structure; saved with the checkpoint
        (e.g. FAFS's branch tree), so a loaded run gets the architecture it was trained into."""
        return {}
