"""The training loop.

It knows the model, the weighting and the tasks only through their contracts: ``model(features)``
gives ``{task: output}``, each task scores its own output under its mask, ``model.regularization()``
adds the method's penalties, and the weighting does the backward pass. Model selection uses the
validation split only; the best weights are kept in memory (and on disk when a checkpoint path is
given) and restored at the end.

The hot path has no per-batch host synchronisation: running losses stay tensors and are read
for the progress bar every few steps only; metrics are computed once per split, not per batch.

Evaluation and prediction live in :mod:`polytask.train.evaluation`, the data-parallel helpers in
:mod:`polytask.train.distributed`, the progress bar in :mod:`polytask.train.progress`;
``predict_raw`` and ``evaluate_table`` are re-exported here for older imports.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import torch
from pydantic import Field
from torch import Tensor, nn

from polytask.data.table import Batch, TensorTable
from polytask.errors import ConfigError, TrainingError
from polytask.metrics import higher_is_better
from polytask.tasks import Task
from polytask.train import distributed
from polytask.train.evaluation import evaluate_table, per_example_losses, predict_raw
from polytask.train.loggers import Logger, check_loggers, create_loggers
from polytask.train.optim import create_optimizer, create_scheduler, parameter_groups
from polytask.train.progress import ProgressBar
from polytask.train.schedule import Schedule, make_schedule
from polytask.train.settings import checks_settings, settings_fields, settings_model
from polytask.weighting import Equal, StepContext, Weighting

__all__ = ["Monitor", "Trainer", "evaluate_table", "parse_monitor", "predict_raw", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; an unknown or absent device is a ConfigError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"train.device: {device!r} is not a device: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {device!r} asked for but CUDA is not available")
    return resolved


#: the prefix of a monitor averaged over the tasks: ``mean.<metric>``
MEAN = "mean"
#: ``mean.relative_loss``: each task's validation loss divided by the untrained model's, averaged
#: over the trained tasks (the default monitor; see docs/design.md)
RELATIVE_LOSS = "relative_loss"
DEFAULT_MONITOR = f"{MEAN}.{RELATIVE_LOSS}"


@dataclass(frozen=True)
class Monitor:
    """What model selection reads from the validation metrics, and in which direction.

    ``loss`` (the sum of the trained tasks' validation losses), ``<task>.<metric>`` (one task's
    metric), ``mean.<metric>`` (the mean of that metric over the tasks that have it; NaN values,
    e.g. an AUC on a single-class split, are left out) or ``mean.relative_loss`` (the mean over the
    trained tasks of each task's validation loss divided by the model's before training, so every
    task counts the same whatever the scale of its loss)."""

    name: str
    #: the task of ``<task>.<metric>``; None for ``loss`` and the means
    task: str | None
    metric: str
    higher_is_better: bool
    #: the tasks a ``mean.`` monitor averages over (empty otherwise)
    tasks: tuple[str, ...] = ()

    def __iter__(self):  # noqa: ANN204 - ``task, metric, higher = parse_monitor(...)`` as before
        return iter((self.task, self.metric, self.higher_is_better))

    def score(self, metrics: Mapping[str, Any], reference: Mapping[str, float] | None = None) -> float:
        """The monitored value in ``metrics`` (:func:`evaluate_table`'s dict). ``reference`` is
        ``{task: validation loss}`` before training, which ``mean.relative_loss`` divides by
        (``metrics``' own losses if None)."""
        if self.task is not None:
            return float(metrics[self.task][self.metric])
        if not self.tasks:
            return float(metrics["loss"])
        if self.metric == f"{MEAN}.{RELATIVE_LOSS}":
            ratios = []
            for t in self.tasks:
                base = float(metrics[t]["loss"] if reference is None else reference[t])
                if math.isfinite(base) and base > 0:  # 0: no labelled validation row
                    ratios.append(float(metrics[t]["loss"]) / base)
            return sum(ratios) / len(ratios) if ratios else float("nan")
        metric = self.metric.removeprefix(f"{MEAN}.")
        values = [float(metrics[t][metric]) for t in self.tasks]
        values = [v for v in values if not math.isnan(v)]
        return sum(values) / len(values) if values else float("nan")


def parse_monitor(monitor: str, tasks: Sequence[Task], trained: Sequence[str] | None = None) -> Monitor:
    """``loss``, ``<task>.<metric>``, ``mean.<metric>`` or ``mean.relative_loss`` -> a
    :class:`Monitor` (unpacks as ``task, metric, higher_is_better``). ``trained`` are the tasks
    a mean is taken over (default: all ``tasks``). ConfigError ``train.monitor`` otherwise."""
    if monitor == "loss":
        return Monitor(monitor, None, "loss", False)
    task_name, _, metric = monitor.rpartition(".")
    by_name = {t.name: t for t in tasks}
    if task_name == MEAN and (metric == RELATIVE_LOSS or MEAN not in by_name):
        return _parse_mean(monitor, metric, [by_name[n] for n in (trained or by_name) if n in by_name])
    if task_name == MEAN and MEAN in by_name:
        raise ConfigError(
            f"train.monitor: {monitor!r} is ambiguous: there is a task named 'mean'; rename the task to average "
            f"{metric!r} over the tasks"
        )
    if not task_name:
        raise ConfigError(
            f"train.monitor: {monitor!r} must be 'loss', 'mean.relative_loss', 'mean.<metric>' or '<task>.<metric>' "
            f"with a task among {', '.join(by_name)}"
        )
    if task_name not in by_name:
        raise ConfigError(
            f"train.monitor: {monitor!r} names task {task_name!r}, which this run does not have (tasks: "
            f"{', '.join(by_name)}); or average over the tasks with 'mean.{metric}' or 'mean.relative_loss'"
        )
    if metric not in by_name[task_name].metrics and metric != "loss":
        raise ConfigError(
            f"train.monitor: task {task_name!r} has metrics {', '.join(by_name[task_name].metrics)}, not {metric!r}"
        )
    return Monitor(monitor, task_name, metric, higher_is_better(metric, by_name[task_name]))


def _parse_mean(monitor: str, metric: str, tasks: Sequence[Task]) -> Monitor:
    if metric in (RELATIVE_LOSS, "loss"):
        return Monitor(monitor, None, monitor, False, tuple(t.name for t in tasks))
    having = [t for t in tasks if metric in t.metrics]
    if not having:
        offered = sorted({m for t in tasks for m in t.metrics})
        raise ConfigError(
            f"train.monitor: no task has the metric {metric!r} to average (the tasks have {', '.join(offered)}, "
            f"and loss, relative_loss)"
        )
    directions = {t.name: t.metric(metric).higher_is_better for t in having}
    if len(set(directions.values())) > 1:
        raise ConfigError(f"train.monitor: {metric!r} is higher-is-better for some tasks and not others: {directions}")
    return Monitor(monitor, None, monitor, directions[having[0].name], tuple(t.name for t in having))


#: Trainer keywords that are not ``train:`` settings: objects, or values from the ``weighting``,
#: ``optimizer`` and ``scheduler`` sections. Every other keyword is a ``train:`` key (see
#: :mod:`polytask.train.settings`).
NOT_SETTINGS = frozenset({
    "weighting", "optimizer", "lr", "weight_decay", "optimizer_params", "scheduler", "scheduler_params",
    "log_path", "log_params", "on_improve", "callbacks", "resume_path",
})

#: the ``format`` tag of a resume file (see :meth:`Trainer.resume_state`)
RESUME_FORMAT = "polytask-resume"


class Trainer:
    """Fit a multi-task model with early stopping on the validation split.

    The keyword parameters are also the config's ``train:`` section (all but :data:`NOT_SETTINGS`):
    their type hints, constraints (``Annotated[int, Field(ge=1)]``) and defaults are that section's
    schema, and they are checked against it here too, so a bad value is a ConfigError naming
    ``train.<key>`` whichever way the trainer is built.

    Args:
        model: a :class:`~polytask.models.base.MultiTaskModel`.
        tasks: the tasks, in the model's order.
        weighting: how task losses combine (default: equal weights).
        optimizer, lr, weight_decay, optimizer_params: the optimiser (Adam by default).
        scheduler, scheduler_params: an epoch-level learning-rate schedule (``none`` by default).
        epochs, batch_size, eval_batch_size: loop sizes.
        patience: stop after this many epochs without improvement of ``monitor`` (None: never).
        monitor: ``mean.relative_loss`` (default: the mean over the trained tasks of each task's
            validation loss relative to its first epoch's), ``loss`` (sum of validation task
            losses), ``mean.<metric>`` (the mean of that metric over the tasks that have it) or
            ``<task>.<metric>``; each in its metric's own direction (see :class:`Monitor`).
        seed: seeds the batch order.
        schedule: which rows and tasks each step trains (:mod:`polytask.train.schedule`):
            ``joint`` (shuffled batches, every task), ``round_robin`` (each batch from one group
            of rows labelled for the same tasks, e.g. one source, groups taking turns) or ``jmt``
            (every epoch each task in turn, in the run's task order, on its own rows with only its
            own loss; Hashimoto et al. 2017).
        device: ``auto`` (CUDA if present), ``cpu``, ``cuda``...
        grad_clip: clip the global gradient norm.
        lr_scale: ``{parameter-name pattern: factor}``: parameters whose names match a pattern
            (shell-style; the first matching one wins) train at ``lr * factor``, times any
            ``lr_scale`` the model's own groups set (:func:`~polytask.train.optim.parameter_groups`),
            e.g. ``{"input.trunk.*": 0.1}`` to fine-tune a pretrained trunk slowly.
        amp: ``bf16`` autocast (CPU or CUDA) or ``fp16`` autocast with a gradient scaler (CUDA only).
        accumulate: micro-batches per optimiser step (each ``batch_size`` rows; gradient methods
            combine the task gradients of each micro-batch).
        l1, l2: ``l1 * sum|w|`` and ``l2/2 * sum w^2`` over the model's weight matrices and
            embeddings (not biases), added as loss terms of their own and logged separately.
        log_every: every this many optimiser steps, record the task weights and the pairwise
            cosine similarity of the task gradients (of the shared parameters) in the log.
        loggers: where the run log goes: ``jsonl`` (``log_path``, one line per epoch), ``tensorboard``
            (``<log_path's folder>/tensorboard``), ``mlflow`` (MLflow's tracking settings); each
            receives every epoch record (:mod:`polytask.train.loggers`).
        log_path: JSONL file, one line per epoch; its folder is the run directory other loggers
            write into.
        log_params: the run's resolved config, for loggers that record parameters (MLflow).
        on_improve: called with the trainer whenever the monitored score improves (e.g. to save
            a checkpoint).
        callbacks: called with the trainer and the epoch's record after every epoch.
        resume_path: where to write, atomically at the end of every epoch (after the epoch's log
            line, before the callbacks), everything :meth:`load_resume_state` needs to continue
            the run from the next epoch exactly as if it had not stopped.
        progress: show a progress bar.
        probe_rows: held-out rows (validation, else train) whose per-example losses a model that
            changes its structure during training (FAFS) sees after each epoch.
    """

    @checks_settings(exclude=NOT_SETTINGS)
    def __init__(
        self,
        model: nn.Module,
        tasks: Sequence[Task],
        *,
        weighting: Weighting | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer_params: dict[str, Any] | None = None,
        scheduler: str = "none",
        scheduler_params: dict[str, Any] | None = None,
        epochs: Annotated[int, Field(ge=1)] = 20,
        batch_size: Annotated[int, Field(ge=1)] = 1024,
        eval_batch_size: Annotated[int, Field(ge=1)] = 8192,
        patience: Annotated[int, Field(ge=1)] | None = 5,
        monitor: str = DEFAULT_MONITOR,
        min_delta: Annotated[float, Field(ge=0)] = 0.0,
        seed: int = 0,
        schedule: Literal["joint", "round_robin", "jmt"] = "joint",
        device: str | torch.device = "auto",
        grad_clip: Annotated[float, Field(gt=0)] | None = None,
        lr_scale: dict[str, Annotated[float, Field(gt=0)]] | None = None,
        amp: Literal["none", "bf16", "fp16"] = "none",
        accumulate: Annotated[int, Field(ge=1)] = 1,
        l1: Annotated[float, Field(ge=0)] = 0.0,
        l2: Annotated[float, Field(ge=0)] = 0.0,
        log_every: Annotated[int, Field(ge=1)] | None = 50,
        loggers: tuple[str, ...] = ("jsonl",),
        log_path: str | os.PathLike | None = None,
        log_params: Mapping[str, Any] | None = None,
        on_improve: Callable[[Trainer], None] | None = None,
        callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
        resume_path: str | os.PathLike | None = None,
        progress: bool = True,
        probe_rows: Annotated[int, Field(ge=1)] = 8192,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.tasks = list(tasks)
        trained = set(self.model.loss_task_names())
        #: the tasks in the loss (all of them, unless the model predicts some it is not trained on)
        self.loss_tasks = [t for t in self.tasks if t.name in trained]
        self.weighting = (weighting or Equal(self.loss_tasks)).to(self.device)
        #: what model selection reads (:class:`Monitor`)
        self.monitor_spec = parse_monitor(monitor, self.tasks, [t.name for t in self.loss_tasks])
        self.monitor_task, self.monitor_metric, self.higher_is_better = self.monitor_spec
        self.monitor = monitor
        #: ``{task: validation loss}`` of the model before training (what ``mean.relative_loss``
        #: divides by; in the first epoch's record as ``initial_validation_loss``)
        self.reference_losses: dict[str, float] | None = None
        self._optimizer_spec = (optimizer, lr, weight_decay, optimizer_params or {}, scheduler, scheduler_params or {}, epochs)
        #: ``{parameter-name pattern: learning-rate factor}`` (see :func:`parameter_groups`)
        self.lr_scale = dict(lr_scale or {})
        self._build_optimizer()
        self.epochs, self.batch_size, self.eval_batch_size = epochs, batch_size, eval_batch_size
        self.patience, self.min_delta, self.seed = patience, min_delta, seed
        self.schedule = schedule
        #: text features whose batches are cut to their longest row while training, with the
        #: token-level tasks that follow them (see :meth:`Batch.trim_tokens`)
        self._token_tasks: dict[str, list[str]] = {}
        for t in self.tasks:
            feature = t.spec.token_feature
            if feature is not None:
                self._token_tasks.setdefault(feature, []).append(t.name)
        self.grad_clip = grad_clip
        if amp == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.amp: fp16 needs a CUDA device (use bf16 on the CPU)")
        self.amp, self.accumulate, self.l1, self.l2, self.log_every = amp, accumulate, l1, l2, log_every
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
        self.world_size, self.rank = distributed.world()
        self.log_path = Path(log_path) if log_path else None
        self.loggers, self.log_params = tuple(loggers), log_params
        check_loggers(self.loggers, self.log_path.parent if self.log_path is not None else None)
        self._loggers: list[Logger] = []
        self.on_improve = on_improve
        self.callbacks = list(callbacks)
        self.progress = progress
        self.probe_rows = probe_rows
        self.history: list[dict[str, Any]] = []
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.step = 0
        #: epochs without improvement of the monitor (early stopping)
        self.stale = 0
        #: the first epoch :meth:`fit` trains (later than 1 after :meth:`load_resume_state`)
        self.start_epoch = 1
        self.resume_path = Path(resume_path) if resume_path else None
        self._resume_rng: dict[str, Any] | None = None
        self.weighting.setup(self.model)

    @classmethod
    def settings_fields(cls) -> dict[str, tuple[Any, Any]]:
        """The ``train:`` keys: ``{name: (type, default)}`` of this class's keyword parameters
        except :data:`NOT_SETTINGS`."""
        return settings_fields(cls.__init__, NOT_SETTINGS)

    @classmethod
    def settings_model(cls) -> type[pydantic.BaseModel]:
        """:meth:`settings_fields` as a pydantic model (the base of
        :class:`polytask.config.TrainConfig`)."""
        return settings_model(cls.__init__, NOT_SETTINGS)

    def _build_optimizer(self) -> None:
        """(Re)create optimiser and scheduler over the model's current parameters."""
        name, lr, weight_decay, params, scheduler, scheduler_params, epochs = self._optimizer_spec
        groups = parameter_groups(self.model, self.model.optimizer_groups(), lr, self.lr_scale)
        if list(self.weighting.parameters()):
            groups.append({"params": list(self.weighting.parameters()), "lr": lr})
        self.optimizer = create_optimizer(name, groups, {"lr": lr, "weight_decay": weight_decay, **params})
        self.scheduler = create_scheduler(scheduler, self.optimizer, scheduler_params, epochs=epochs)

    # ------------------------------------------------------------------------------------------
    # -- one step ------------------------------------------------------------------------------
    def _loss_scale(self) -> float:
        return float(self.scaler.get_scale()) if self.scaler is not None else 1.0

    def _backward(self, tensor: Tensor, gradient: Tensor | None = None, inputs: Sequence[Tensor] | None = None,
                  retain_graph: bool | None = None) -> None:
        """Backward with the AMP loss scale and the accumulation average applied."""
        factor = self._loss_scale() / self.accumulate
        if gradient is not None:
            tensor.backward(gradient * factor, inputs=inputs, retain_graph=retain_graph)
        else:
            (tensor * factor if factor != 1.0 else tensor).backward(inputs=inputs, retain_graph=retain_graph)

    def _all_reduce(self, tensor: Tensor, op: str = "sum") -> Tensor:
        return distributed.all_reduce(tensor, op, self.world_size)

    def _penalties(self) -> dict[str, Tensor]:
        extra = dict(self.model.regularization())
        if self.l1 or self.l2:
            weights = [p for p in self.model.parameters() if p.requires_grad and p.dim() > 1]
            if self.l1:
                extra["l1"] = self.l1 * sum(p.abs().sum() for p in weights)
            if self.l2:
                extra["l2"] = 0.5 * self.l2 * sum(p.square().sum() for p in weights)
        return extra

    def _task_cosines(self, losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Any] | None:
        from polytask.weighting.gradient import gradient_log, task_gradients

        shared = self.model.shared_parameters()
        names = ctx.active(list(losses))
        if not shared or len(names) < 2:
            return None
        g = self._all_reduce(task_gradients([losses[n] for n in names], shared, ctx.loss_scale), "mean")
        return gradient_log(names, g @ g.T)

    def _forward_losses(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        amp = self.amp != "none"
        with torch.autocast(self.device.type, dtype=torch.bfloat16 if self.amp == "bf16" else torch.float16, enabled=amp):
            outputs = self.model(batch.features)
            losses = {
                t.name: t.loss(outputs[t.name], batch.labels[t.name], batch.masks[t.name], batch.weights.get(t.name))
                for t in self.loss_tasks
            }
            extra = self._penalties()
        if self.world_size > 1:
            losses = distributed.globalise(losses, batch, self.world_size, self.loss_tasks)
        return losses, extra

    def train_epoch(self, loader: Schedule, bar: Any = None) -> dict[str, Any]:
        """One pass over the training data; returns each task's mean batch loss (over the batches
        holding a label of it) and mean task weights (and, every ``log_every`` steps, the step's
        weights and task-gradient cosines). ``loader`` is a :class:`Schedule` (its batches come
        with the task a one-task-at-a-time schedule trains; the masks already say so)."""
        model, tasks, weighting, opt = self.model, self.loss_tasks, self.weighting, self.optimizer
        model.train()
        names = [t.name for t in tasks]
        loss_sum = torch.zeros(len(tasks), device=self.device)
        loss_batches = torch.zeros(len(tasks), device=self.device)
        weight_sum = torch.zeros(len(tasks), device=self.device)
        extra_sum: dict[str, Tensor] = {}
        steps: list[dict[str, Any]] = []
        batches = 0
        total_batches = len(loader)
        non_blocking = self.device.type == "cuda"
        # a loader whose batches are already this process's share (a streamed set) is not sharded again
        per_process = getattr(loader, "per_process", False)
        for batch, _ in loader:
            for feature, token_tasks in self._token_tasks.items():
                batch = batch.trim_tokens(feature, token_tasks)
            # which tasks the (global) batch holds labels for, before it is sharded over processes
            labelled = torch.stack([batch.masks[n].any() for n in names]).to(self.device, torch.float32)
            if self.device.type != "cpu":
                batch = batch.to(self.device, non_blocking=non_blocking)
            if self.world_size > 1 and not per_process:
                batch = distributed.shard(batch, self.rank, self.world_size)
                if batch is None:
                    continue
            micro = batches % self.accumulate
            last_micro = micro == self.accumulate - 1 or batches == total_batches - 1
            losses, extra = self._forward_losses(batch)
            if micro == 0:
                opt.zero_grad(set_to_none=True)
            record = bool(self.log_every) and last_micro and self.step % self.log_every == 0
            ctx = StepContext(model=model, backward=self._backward, masks=batch.masks, step=self.step,
                              loss_scale=self._loss_scale(), all_reduce=self._all_reduce, world_size=self.world_size,
                              record=record, accumulation=self.accumulate)
            if record and not weighting.computes_task_gradients:
                cos = self._task_cosines(losses, ctx)
                if cos is not None:
                    ctx.log["cosine"] = cos
            weights = weighting.backward(losses, extra, ctx)
            if last_micro:
                self._optimizer_step()
                if weighting.wants_losses_after_step:
                    with torch.no_grad():
                        weighting.after_step(losses, lambda b=batch: self._forward_losses(b)[0], ctx)
                self.step += 1
            with torch.no_grad():
                loss_sum += torch.stack([losses[n].detach().float() for n in names])
                loss_batches += labelled
                w = torch.stack([torch.as_tensor(weights.get(n, 0.0), device=self.device).float() for n in names])
                weight_sum += w
                for k, v in extra.items():
                    extra_sum[k] = extra_sum.get(k, 0.0) + v.detach().float()
            if record:
                steps.append({"step": self.step - 1, "weights": dict(zip(names, w.tolist())), **ctx.log})
            batches += 1
            if bar is not None:
                bar.advance(batches, loss_sum)
        n = max(batches, 1)
        if self.world_size > 1:  # every process logs (and hands the weighting) the global epoch means
            loss_sum, weight_sum = self._all_reduce(loss_sum, "mean"), self._all_reduce(weight_sum, "mean")
        losses_mean = (loss_sum / loss_batches.clamp_min(1)).tolist()
        out = {
            "train_loss": dict(zip(names, losses_mean)),
            "weights": dict(zip(names, (weight_sum / n).tolist())),
            "regularization": {k: float(v) / n for k, v in extra_sum.items()},
        }
        if steps:
            out["steps"] = steps
        return out

    def _optimizer_step(self) -> None:
        if self.world_size > 1:
            distributed.all_reduce_grads([*self.model.parameters(), *self.weighting.parameters()], self.world_size)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def predict_raw(self, table: TensorTable) -> dict[str, Tensor]:
        """Raw outputs for every row of ``table`` (on the CPU), in row order."""
        return predict_raw(self.model, table, [t.name for t in self.tasks], self.eval_batch_size, self.device)

    def evaluate(self, table: TensorTable) -> dict[str, Any]:
        """``{task: {metric: value}}`` plus ``loss`` (sum of the task losses) on labelled rows."""
        return evaluate_table(self.model, self.tasks, table, self.eval_batch_size, self.device)

    def per_example_losses(self, table: TensorTable, max_rows: int | None = None) -> Tensor:
        """``[N, T]`` loss of every row of ``table`` (the first ``max_rows``), NaN where unlabelled."""
        return per_example_losses(self.model, self.tasks, table, max_rows, self.eval_batch_size, self.device)

    def score(self, metrics: dict[str, Any]) -> float:
        """The monitored value of validation ``metrics`` (see :class:`Monitor`)."""
        return self.monitor_spec.score(metrics, self.reference_losses)

    def _check_finite(self, losses: Mapping[str, float], epoch: int, split: str) -> None:
        """TrainingError when a task's loss is NaN or infinite: the model diverged, and neither
        this state nor anything trained from it may be kept."""
        bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
        if not bad:
            return
        names = ", ".join(f"{name} ({value})" for name, value in bad.items())
        raise TrainingError(
            f"epoch {epoch}: the {split} loss of task{'s' if len(bad) > 1 else ''} {names} is not finite; the model "
            f"diverged, so training stopped and no checkpoint of it was kept. Lower the learning rate "
            f"(optimizer.lr), set train.grad_clip, or check the data for extreme or invalid values"
        )

    def _improved(self, score: float) -> bool:
        if math.isnan(score):
            return False
        if self.best_score is None:
            return True
        if self.higher_is_better:
            return score > self.best_score + self.min_delta
        return score < self.best_score - self.min_delta

    # ------------------------------------------------------------------------------------------
    def fit(self, train: TensorTable, validation: TensorTable | None = None, *,
            loader: Schedule | None = None) -> list[dict[str, Any]]:
        """Train; with a validation split, early-stop on ``monitor`` and restore the best weights.
        ``loader`` gives the training batches when they do not come from ``train`` through
        ``train.schedule`` (a streamed training set: :class:`~polytask.data.streaming.StreamSchedule`;
        ``train`` is then the split, for its row count)."""
        if loader is None:
            loader = make_schedule(self.schedule, train, self.loss_tasks, self.batch_size, seed=self.seed,
                                   begin_task=self.model.begin_task)
        loader.set_epoch(self.start_epoch - 1)  # epoch k's order, also in a resumed run
        if validation is not None and self.monitor_spec.metric == DEFAULT_MONITOR and self.reference_losses is None:
            initial = self.evaluate(validation)  # one pass before training: each task's scale
            self.reference_losses = {name: float(initial[name]["loss"]) for name in self.monitor_spec.tasks}
        if self._resume_rng is not None:  # where the stopped run stood after its last epoch
            set_rng_state(self._resume_rng)
            self._resume_rng = None
        stopped = self.patience is not None and validation is not None and self.stale >= self.patience
        self._loggers = create_loggers(self.loggers, self.log_path.parent if self.log_path is not None else None,
                                       self.log_params, jsonl_path=self.log_path)
        try:
            self._fit_epochs(loader, train, validation, stopped)
        finally:
            for logger in self._loggers:
                logger.close()
            self._loggers = []
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        elif validation is None:
            self.best_epoch = len(self.history)
        return self.history

    def _fit_epochs(self, loader: Schedule, train: TensorTable, validation: TensorTable | None, stopped: bool) -> None:
        with ProgressBar(self.progress, self.epochs, len(loader), first_epoch=self.start_epoch) as bar:
            for epoch in range(self.start_epoch, self.epochs + 1 if not stopped else self.start_epoch):
                bar.start_epoch(epoch)
                start = time.perf_counter()
                record: dict[str, Any] = {"epoch": epoch, **self.train_epoch(loader, bar)}
                if epoch == 1 and self.reference_losses is not None:
                    record["initial_validation_loss"] = dict(self.reference_losses)
                record["train_seconds"] = time.perf_counter() - start
                record["train_samples"] = len(train)
                record["lr"] = self.optimizer.param_groups[0]["lr"]
                try:  # once per epoch, on the means train_epoch already read (no extra host sync)
                    self._check_finite(record["train_loss"], epoch, "training")
                    if validation is not None:
                        metrics = self.evaluate(validation)
                        record["validation"] = metrics
                        self._check_finite({t.name: metrics[t.name]["loss"] for t in self.loss_tasks}, epoch,
                                           "validation")
                except TrainingError:
                    self.history.append(record)  # the log shows the diverged epoch
                    self._log(record)
                    raise
                if validation is not None:
                    score = self.score(metrics)
                    record["monitor"] = {self.monitor: score}
                    diag = self.model.diagnostics()
                    if diag:
                        record["diagnostics"] = diag
                    if self._improved(score):
                        self.best_score, self.best_epoch, self.stale = score, epoch, 0
                        self.best_state = copy.deepcopy(self.model.state_dict())
                        if self.on_improve is not None:
                            self.on_improve(self)
                    else:
                        self.stale += 1
                    bar.end_epoch(epoch, record, self.monitor, score, self.best_score, self.best_epoch)
                else:
                    bar.end_epoch(epoch, record)
                probe_table = validation if validation is not None else train
                if self.model.adapt(epoch, lambda: self.per_example_losses(probe_table, self.probe_rows)):
                    # new parameters: a fresh optimiser over them, its schedule where the run's is (the
                    # learning rate of the next epoch), and early stopping restarts for the new
                    # structure (the best weights so far belong to the old one)
                    self._build_optimizer()
                    self._advance_scheduler(epoch)  # epochs count from 1: a kept scheduler has stepped `epoch` times
                    self.weighting.setup(self.model)
                    self.best_score, self.best_state, self.stale = None, None, 0
                    record["structure"] = self.model.structure()
                else:
                    self._step_scheduler(record)
                ws = self.weighting.state()
                if ws:
                    record["weighting"] = ws
                self.weighting.on_epoch_end(epoch, record["train_loss"])
                self.history.append(record)
                self._log(record)
                if self.resume_path is not None:
                    self.save_resume(self.resume_path, epoch)
                for callback in self.callbacks:
                    callback(self, record)
                if self.patience is not None and validation is not None and self.stale >= self.patience:
                    break

    # -- exact resume ------------------------------------------------------------------------------
    def resume_state(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue after ``epoch`` exactly as this run will: the model's
        weights, its structure (``model.structure()``: FAFS's branch tree, so a widened model is
        rebuilt before loading) and its plain Python attributes (FAFS's next widening), the
        optimiser, scheduler and AMP scaler, the weighting's :meth:`~Weighting.resume_state`, the
        early-stopping state (best score, epoch and weights, stale count, the monitor's reference
        losses), the history, the step counter and the RNG states (torch CPU and CUDA, numpy,
        ``random``) of every process (``rng[rank]``; in a torchrun every process must call this, as
        it gathers them); the batch order of the next epoch is a function of ``seed`` and the epoch."""
        rng: list[Any] = [get_rng_state()]
        if self.world_size > 1:
            import torch.distributed as dist

            rng = [None] * self.world_size
            dist.all_gather_object(rng, get_rng_state())

        def cpu(state: Mapping[str, Tensor] | None) -> dict[str, Tensor] | None:
            return None if state is None else {k: v.detach().cpu().clone() for k, v in state.items()}

        return {
            "format": RESUME_FORMAT, "version": 1, "epoch": epoch,
            "structure": self.model.structure() if hasattr(self.model, "structure") else {},
            "model_attributes": model_attributes(self.model),
            "model": cpu(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "weighting": self.weighting.resume_state(),
            "best_score": self.best_score, "best_epoch": self.best_epoch, "best_state": cpu(self.best_state),
            "stale": self.stale, "history": copy.deepcopy(self.history),
            "reference_losses": dict(self.reference_losses) if self.reference_losses is not None else None,
            "step": self.step, "world_size": self.world_size, "rng": rng,
        }

    def save_resume(self, path: str | os.PathLike, epoch: int) -> None:
        """Write :meth:`resume_state` to ``path`` atomically (a kill mid-write leaves the previous
        file); in a torchrun every process calls it, rank 0 writes."""
        from polytask.fileio import atomic_path

        state = self.resume_state(epoch)
        if self.rank != 0:
            return
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def load_resume_state(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`resume_state`: :meth:`fit` then trains from the epoch after the
        saved one. The model must already have the saved structure (rebuild it with
        ``{**params, **state["structure"]}``); a mismatch is a TrainingError."""
        if state.get("format") != RESUME_FORMAT:
            raise TrainingError("not a polytask resume file")
        if state["world_size"] != self.world_size:
            raise ConfigError(f"--resume: the interrupted run was trained by {state['world_size']} process(es), this one "
                              f"by {self.world_size}; resume with as many (torchrun --nproc_per_node)")
        structure = self.model.structure() if hasattr(self.model, "structure") else {}
        if structure != state["structure"]:
            raise TrainingError(f"the model's structure {structure} is not the saved one {state['structure']}")
        for name, value in state["model_attributes"].items():
            setattr(self.model, name, copy.deepcopy(value))
        self.model.load_state_dict(state["model"])
        self._build_optimizer()  # over the parameters as they are now, as the stopped run had them
        self.weighting.setup(self.model)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.weighting.load_resume_state(state["weighting"])
        self.best_score, self.best_epoch, self.stale = state["best_score"], state["best_epoch"], state["stale"]
        best = state["best_state"]
        self.best_state = None if best is None else {k: v.to(self.device) for k, v in best.items()}
        self.history = copy.deepcopy(state["history"])
        self.reference_losses = dict(state["reference_losses"]) if state["reference_losses"] is not None else None
        self.step = state["step"]
        self.start_epoch = state["epoch"] + 1
        self._resume_rng = state["rng"][self.rank]

    def _advance_scheduler(self, steps: int) -> None:
        """Put a freshly built epoch-level scheduler ``steps`` epochs into its schedule (where the
        replaced one was), setting the optimiser's learning rates to that point. A plateau
        scheduler, which follows the monitored score rather than the epoch, starts afresh."""
        if self.scheduler is None or isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            return
        with warnings.catch_warnings():  # no optimiser step belongs to these epochs
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(steps):
                self.scheduler.step()

    def _step_scheduler(self, record: dict[str, Any]) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            score = next(iter(record.get("monitor", {"loss": sum(record["train_loss"].values())}).values()))
            self.scheduler.step(-score if self.higher_is_better else score)
        else:
            self.scheduler.step()

    def _log(self, record: dict[str, Any]) -> None:
        for logger in self._loggers:
            logger.log(record)


_PLAIN = (bool, int, float, str, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def model_attributes(model: nn.Module) -> dict[str, Any]:
    """The model's own plain Python attributes (numbers, strings, lists of them: FAFS's branch
    tree and next widening epoch), which a resumed model must get back; ``training`` and private
    (``_``) attributes (the module's own bookkeeping) are left out."""
    return {k: copy.deepcopy(v) for k, v in vars(model).items()
            if k != "training" and not k.startswith("_") and _is_plain(v)}


def get_rng_state() -> dict[str, Any]:
    """The states of the global random generators: torch (CPU, every CUDA device), numpy, random."""
    import random

    import numpy as np

    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": np.random.get_state(),
        "random": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`get_rng_state`'s states."""
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
