"""Inter-task affinity measured during one short joint run, and the grouping it advises.

**Lookahead affinity** (Task Affinity Grouping, TAG: Fifty et al., "Efficiently Identifying Task
Groupings for Multi-Task Learning", NeurIPS 2021, Eq. 2-3). At a training step with shared
parameters ``theta_s``, a step on task ``i``'s loss alone, ``theta_s' = theta_s - lr * grad L_i``
(plain SGD, task-specific parameters unchanged), changes task ``j``'s loss on the same batch by

    ``Z_{i->j} = 1 - L_j(theta_s', theta_j) / L_j(theta_s, theta_j)``:

positive when ``i``'s step helps ``j``, negative when it hurts. Averaged over the logged steps of
the run it is the affinity :mod:`polytask.analysis.grouping` groups tasks by. Alongside: the
pairwise cosines of the task gradients on the shared parameters (the same gradients), and at the
end the easy/hard agreement of :func:`polytask.analysis.affinity.easy_hard_affinity` on held-out
per-example losses.

**How the run is driven.** The trainer calls callbacks once per epoch only, and TAG measures *at*
training steps, on the batch the step trains on, with the parameters as they are before it. So
:func:`measure_affinity` runs a compact loop of its own over the trainer's public pieces: it builds
the data, model and :class:`~polytask.train.trainer.Trainer` as ``polytask train`` does (equal
weighting), and hands :meth:`Trainer.train_epoch` the run's batch schedule wrapped so that every
``every``-th batch is measured just before the trainer steps on it. Training itself is the
trainer's own (losses, weighting, optimiser, clipping, AMP); nothing is written but the result.

Measurements run the model in eval mode (no dropout; batch norm on its running statistics), so
the losses before and after the lookahead differ by the step only, and never modify it:
:func:`torch.func.functional_call` evaluates the model with the stepped shared parameters.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polytask.analysis.grouping import Grouping, advise, best_groupings
from polytask.tasks import Task


# -- one step -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepAffinity:
    """One step's ``[T, T]`` lookahead ``Z[i, j] = Z_{i->j}`` and task-gradient cosines on the
    shared parameters; NaN in the rows and columns of tasks with no labelled row in the batch."""

    lookahead: Tensor
    cosine: Tensor


def step_affinity(
    model: nn.Module,
    tasks: Sequence[Task],
    features: Mapping[str, Tensor],
    labels: Mapping[str, Tensor],
    masks: Mapping[str, Tensor],
    lr: float,
    weights: Mapping[str, Tensor] | None = None,
) -> StepAffinity:
    """Lookahead affinity and gradient cosines of ``tasks`` on one batch (see the module doc).

    ``model`` is a :class:`~polytask.models.base.MultiTaskModel` (its ``shared_parameters()`` take
    the lookahead step); it is left as it was (parameters, gradients, train/eval mode)."""
    from torch.func import functional_call

    from polytask.weighting.gradient import cosine_from_gram

    shared = list(model.shared_parameters())
    if not shared:
        raise ValueError(f"{type(model).__name__} shares no parameters between its tasks: no lookahead to take")
    names = {id(p): n for n, p in model.named_parameters()}
    t = len(tasks)
    weights = weights or {}
    labelled = [i for i, task in enumerate(tasks) if bool(masks[task.name].any())]
    z = torch.full((t, t), math.nan)
    cosine = torch.full((t, t), math.nan)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            out = model(dict(features))
            losses = {i: tasks[i].loss(out[tasks[i].name], labels[tasks[i].name], masks[tasks[i].name],
                                       weights.get(tasks[i].name)) for i in labelled}
            grads = {}
            for i in labelled:
                g = torch.autograd.grad(losses[i], shared, retain_graph=True, allow_unused=True)
                grads[i] = [torch.zeros_like(p) if gi is None else gi.detach() for gi, p in zip(g, shared)]
        if not labelled:
            return StepAffinity(z, cosine)
        base = {i: float(losses[i].detach()) for i in labelled}
        flat = torch.stack([torch.cat([g.reshape(-1) for g in grads[i]]) for i in labelled]).float()
        index = torch.tensor(labelled)
        cosine[index[:, None], index[None, :]] = cosine_from_gram(flat @ flat.T).cpu()
        with torch.no_grad():
            for i in labelled:
                stepped = {names[id(p)]: p - lr * g for p, g in zip(shared, grads[i])}
                after = functional_call(model, stepped, (dict(features),), strict=False)
                for j in labelled:
                    task = tasks[j]
                    new = float(task.loss(after[task.name], labels[task.name], masks[task.name], weights.get(task.name)))
                    if base[j] > 0 and math.isfinite(new):
                        z[i, j] = 1.0 - new / base[j]
    finally:
        model.train(was_training)
    return StepAffinity(z, cosine)


def lookahead_affinity(
    model: nn.Module,
    tasks: Sequence[Task],
    features: Mapping[str, Tensor],
    labels: Mapping[str, Tensor],
    masks: Mapping[str, Tensor],
    lr: float,
    weights: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """``[T, T]`` ``Z[i, j] = 1 - L_j(theta_s - lr grad L_i) / L_j(theta_s)`` on one batch (TAG,
    Fifty et al. 2021); NaN for a task with no labelled row in the batch."""
    return step_affinity(model, tasks, features, labels, masks, lr, weights).lookahead


class AffinityMeter:
    """Running means over steps of the lookahead and cosine matrices, entry by entry (a step where
    a task had no label leaves its entries out)."""

    def __init__(self, num_tasks: int) -> None:
        shape = (num_tasks, num_tasks)
        self._sum = {"lookahead": torch.zeros(shape, dtype=torch.float64), "cosine": torch.zeros(shape, dtype=torch.float64)}
        self._count = {k: torch.zeros(shape, dtype=torch.float64) for k in self._sum}
        self._squares = {k: torch.zeros(shape, dtype=torch.float64) for k in self._sum}
        #: steps measured
        self.steps = 0

    def update(self, step: StepAffinity) -> None:
        for key, value in (("lookahead", step.lookahead), ("cosine", step.cosine)):
            seen = ~torch.isnan(value)
            self._sum[key] += torch.where(seen, value.double(), 0.0)
            self._squares[key] += torch.where(seen, value.double() ** 2, 0.0)
            self._count[key] += seen.double()
        self.steps += 1

    def mean(self, key: str) -> Tensor:
        """``lookahead`` or ``cosine``: the mean over the steps (NaN where never measured)."""
        count = self._count[key]
        return torch.where(count > 0, self._sum[key] / count.clamp_min(1), math.nan).float()

    def standard_error(self, key: str) -> Tensor:
        """The standard error of :meth:`mean` (steps taken as independent; NaN under two steps)."""
        count = self._count[key]
        mean = self._sum[key] / count.clamp_min(1)
        var = (self._squares[key] - count * mean**2).clamp_min(0) / (count - 1).clamp_min(1)
        return torch.where(count > 1, (var / count.clamp_min(1)).sqrt(), math.nan).float()


# -- the result ------------------------------------------------------------------------------------
@dataclass
class AffinityResult:
    """What ``polytask affinity`` reports: the three ``[T, T]`` affinity matrices (row = the task
    that acts or is compared, column = the task affected), the best grouping into at most ``k``
    networks for ``k = 1 ..`` (by the lookahead affinity) and the advised one."""

    tasks: list[str]
    lookahead: Tensor
    cosine: Tensor
    easy_hard: Tensor
    #: the standard error of ``lookahead`` (the measured steps taken as independent)
    lookahead_stderr: Tensor
    groupings: list[Grouping]
    advised: Grouping
    steps: int
    epochs: int
    config: dict[str, Any]
    budget: float | None = None
    overlap: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``affinity.json`` (NaN as null)."""

        def matrix(m: Tensor) -> list[list[float | None]]:
            return [[None if math.isnan(v) else float(f"{v:.7g}") for v in row] for row in m.tolist()]

        return {
            "tasks": list(self.tasks),
            "lookahead": matrix(self.lookahead),
            "cosine": matrix(self.cosine),
            "easy_hard": matrix(self.easy_hard),
            "lookahead_stderr": matrix(self.lookahead_stderr),
            "groupings": {str(k): g.named(self.tasks) for k, g in enumerate(self.groupings, start=1)},
            "advised": {**self.advised.named(self.tasks), "networks": self.advised.cost, "budget": self.budget},
            "overlap": self.overlap,
            "config": self.config,
            "steps": self.steps,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 2),
            "notes": list(self.notes),
        }

    def markdown(self) -> str:
        """``affinity.md``: the matrices and the groupings as markdown tables."""
        lines = [f"# Task affinity: {self.config.get('name') or self.config.get('model', {}).get('name', '')}", "",
                 f"{self.steps} measured steps over {self.epochs} epoch(s) of one joint run "
                 f"(model {self.config.get('model', {}).get('name')}, equal weights).", ""]
        for title, m in _MATRICES:
            lines += [f"## {title}", "", _DESCRIPTIONS[title], "", *_markdown_matrix(self.tasks, getattr(self, m)), ""]
        lines += ["## Groupings (TAG objective on the lookahead affinity)", "",
                  "| networks (at most) | groups | serves | score |", "|---|---|---|---|"]
        for k, g in enumerate(self.groupings, start=1):
            named = g.named(self.tasks)
            lines.append(f"| {k} | {_groups_text(named['groups'])} | {_groups_text(named['serves'])} | {g.score:.4g} |")
        budget = f" within a budget of {self.budget:g} networks" if self.budget is not None else ""
        lines += ["", f"**Advised{budget}:** {_groups_text(self.advised.named(self.tasks)['groups'])} "
                      f"({self.advised.cost} network{'s' if self.advised.cost > 1 else ''}, score {self.advised.score:.4g}).", ""]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def save(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write ``affinity.json`` and ``affinity.md`` into ``out_dir`` (made if absent)."""
        from polytask.fileio import atomic_write_text, json_dumps, make_dirs

        out = Path(out_dir)
        make_dirs(out)
        paths = [out / "affinity.json", out / "affinity.md"]
        atomic_write_text(paths[0], json_dumps(self.to_dict(), indent=1) + "\n")
        atomic_write_text(paths[1], self.markdown())
        return paths

    def print(self, console: Any = None) -> None:
        """The matrices and groupings as rich tables (tasks named)."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        for title, m in _MATRICES:
            table = Table(title=f"{title}: {_DESCRIPTIONS[title]}", title_justify="left")
            table.add_column("")
            for name in self.tasks:
                table.add_column(name, justify="right")
            for name, row in zip(self.tasks, getattr(self, m).tolist()):
                table.add_row(name, *("-" if math.isnan(v) else f"{v:.3g}" for v in row))
            console.print(table)
        table = Table(title="groupings into at most k networks (TAG objective, lookahead affinity)", title_justify="left")
        for column in ("k", "groups", "serves", "score"):
            table.add_column(column)
        for k, g in enumerate(self.groupings, start=1):
            named = g.named(self.tasks)
            mark = " (advised)" if g == self.advised and k == self.advised.cost else ""
            table.add_row(f"{k}{mark}", _groups_text(named["groups"]), _groups_text(named["serves"]), f"{g.score:.4g}")
        console.print(table)
        console.print(f"advised: {_groups_text(self.advised.named(self.tasks)['groups'])}")


_MATRICES = (("lookahead", "lookahead"), ("cosine", "cosine"), ("easy/hard", "easy_hard"))
_DESCRIPTIONS = {
    "lookahead": "Z[row -> column] = 1 - L_col(after a step on row) / L_col, mean over the measured steps (TAG)",
    "cosine": "cosine of the two tasks' gradients on the shared parameters, mean over the measured steps",
    "easy/hard": "share of held-out rows both tasks find easy or both hard, at the end of the run (FAFS)",
}


def _markdown_matrix(tasks: Sequence[str], m: Tensor) -> list[str]:
    rows = [f"| | {' | '.join(tasks)} |", "|---|" + "---:|" * len(tasks)]
    for name, row in zip(tasks, m.tolist()):
        rows.append(f"| {name} | " + " | ".join("-" if math.isnan(v) else f"{v:.4g}" for v in row) + " |")
    return rows


def _groups_text(groups: Sequence[Sequence[str]]) -> str:
    return " ".join("{" + ", ".join(g) + "}" for g in groups)


# -- the run ------------------------------------------------------------------------------------------
#: the most epochs of the joint run when none are asked for (a config's epochs are a full training's)
DEFAULT_EPOCHS = 5


class _Measured:
    """The trainer's batch schedule, measuring every ``every``-th batch before it is yielded
    (so before the trainer steps on it)."""

    def __init__(self, schedule: Any, measure: Any, every: int, step: int) -> None:
        self.schedule, self.measure, self.every, self.step = schedule, measure, every, step

    def __len__(self) -> int:
        return len(self.schedule)

    def __iter__(self) -> Iterator[Any]:
        for batch, task in self.schedule:
            if self.step % self.every == 0:
                self.measure(batch)
            self.step += 1
            yield batch, task


class _Progress:
    """A rich bar over the run's batches on a terminal; a plain line per epoch otherwise."""

    def __init__(self, enabled: bool, epochs: int, batches: int) -> None:
        from rich.console import Console

        self.enabled, self.epochs, self.batches = enabled, epochs, batches
        self.console = Console()
        self.bar: Any = None
        self.epoch = 0

    def __enter__(self) -> _Progress:
        if self.enabled and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]affinity {task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
            self.bar.start()
            self.task = self.bar.add_task("", total=self.epochs * self.batches)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.bar is not None:
            self.bar.update(self.task, description=f"epoch {epoch}/{self.epochs}")

    def advance(self, done: int, loss_sum: Tensor) -> None:  # the trainer's bar protocol
        if self.bar is not None:
            self.bar.update(self.task, completed=(self.epoch - 1) * self.batches + done)

    def end_epoch(self, losses: Mapping[str, float], steps: int, seconds: float) -> None:
        if not self.enabled:
            return
        text = ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
        line = f"affinity epoch {self.epoch}/{self.epochs}: train loss {text}; {steps} steps measured ({seconds:.0f}s)"
        if self.bar is not None:
            self.bar.console.print(line)
        else:
            print(line, flush=True)


def measure_affinity(
    config: Any,
    *,
    data_dir: str | os.PathLike | None = None,
    epochs: int | None = None,
    overrides: Sequence[str] | None = None,
    unset: Sequence[str] | None = None,
    every: int | None = None,
    max_groups: int | None = None,
    budget: float | None = None,
    overlap: bool = False,
    lookahead_lr: float | None = None,
    progress: bool = True,
) -> AffinityResult:
    """Train ``config``'s model on all its tasks together (equal weights) for ``epochs`` (default:
    the config's ``train.epochs``, at most :data:`DEFAULT_EPOCHS`), measuring the lookahead
    affinity and gradient cosines every ``every`` steps (default: about 20 measurements per epoch)
    and the easy/hard agreement at the end; group the tasks for at most ``1 .. max_groups``
    networks (disjoint groups unless ``overlap``: see :mod:`polytask.analysis.grouping`) and
    advise one within ``budget``.

    ``config`` is a YAML path, a dict or a :class:`~polytask.config.Config`; ``unset`` are dotted
    keys removed first, ``overrides`` ``key=value`` strings applied then (as ``--unset`` and
    ``--set`` take them). The lookahead step uses the optimiser's current learning rate unless
    ``lookahead_lr`` is given. Nothing is written (see :meth:`AffinityResult.save`). ConfigError
    for a model that shares nothing, bad sizes, or more tasks than the grouping search takes."""
    from polytask.config import Config, config_from_dict, load_config
    from polytask.errors import ConfigError

    started = time.perf_counter()
    if isinstance(config, Config):
        raw = config.to_dict()
    elif isinstance(config, (str, os.PathLike)):
        raw = load_config(config).to_dict()
    else:
        raw = dict(config)
    forced = [*(overrides or []), "weighting.name=equal"]
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs: must be at least 1, got {epochs}")
    raw.pop("weighting", None)  # all tasks together, equal weights: the weighting's own keys do not apply
    cfg = config_from_dict(raw, forced, [k for k in unset or [] if k.split(".")[0] != "weighting"])
    # a short run: the config's epochs are those of a full training
    epochs = epochs if epochs is not None else min(cfg.train.epochs, DEFAULT_EPOCHS)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": int(epochs)})})
    if every is not None and every < 1:
        raise ConfigError(f"--every: must be at least 1, got {every}")
    if max_groups is not None and max_groups < 1:
        raise ConfigError(f"--max-groups: must be at least 1, got {max_groups}")
    if budget is not None and budget < 1:
        raise ConfigError(f"--budget: one network costs 1, so the budget must be at least 1, got {budget:g}")
    threads = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        return _measure(cfg, data_dir=data_dir, every=every, max_groups=max_groups, budget=budget, overlap=overlap,
                        lookahead_lr=lookahead_lr, progress=progress, started=started)
    finally:  # train.threads is this run's setting, not the calling process's
        torch.set_num_threads(threads)


def _measure(cfg: Any, *, data_dir: str | os.PathLike | None, every: int | None, max_groups: int | None,
             budget: float | None, overlap: bool, lookahead_lr: float | None, progress: bool,
             started: float) -> AffinityResult:
    """:func:`measure_affinity` on a resolved config."""
    from polytask.analysis.affinity import easy_hard_affinity
    from polytask.analysis.grouping import MAX_TASKS
    from polytask.api import seed_everything
    from polytask.data.preprocessor import Preprocessor
    from polytask.data.sources import load_splits
    from polytask.errors import ConfigError
    from polytask.models import create_model
    from polytask.train.schedule import make_schedule
    from polytask.train.trainer import Trainer
    from polytask.weighting import create_weighting

    splits = load_splits(cfg.data, data_dir)
    pre = Preprocessor(splits.features, splits.tasks)
    src = splits.sources
    pre.check_columns(splits.train, src.get("train", "train"))
    if splits.validation is not None:
        pre.check_columns(splits.validation, src.get("validation", "validation"))
    pre.fit(splits.train, src.get("train", "train"))
    train_t = pre.transform(splits.train, src.get("train", "train"))
    val_t = pre.transform(splits.validation, src.get("validation", "validation")) if splits.validation is not None else None

    seed_everything(cfg.train.seed)
    model = create_model(cfg.model.name, pre.input_spec(), pre.tasks, cfg.model.params())
    if not model.shared_parameters():
        raise ConfigError(f"model.name: {cfg.model.name!r} shares no parameters between tasks, so no task's step can "
                          "help another; measure affinity with a shared model (e.g. shared_bottom)")
    trained = set(model.loss_task_names())
    tasks = [t for t in pre.tasks if t.name in trained]
    if len(tasks) < 2:
        raise ConfigError(f"data.tasks: affinity needs at least two trained tasks, got {[t.name for t in tasks]}")
    if len(tasks) > MAX_TASKS:
        raise ConfigError(f"data.tasks: {len(tasks)} tasks; the grouping search is exhaustive and takes at most "
                          f"{MAX_TASKS}: choose fewer tasks")
    trainer = Trainer(
        model, pre.tasks, weighting=create_weighting("equal", tasks, {}),
        optimizer=cfg.optimizer.name, lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay,
        optimizer_params=cfg.optimizer.params(), scheduler=cfg.scheduler.name, scheduler_params=cfg.scheduler.params(),
        **{**cfg.train.trainer_settings(), "progress": False},
    )
    schedule = make_schedule(trainer.schedule, train_t, trainer.loss_tasks, trainer.batch_size, seed=trainer.seed,
                             begin_task=model.begin_task)
    per_epoch = len(schedule)
    every = every or max(1, math.ceil(per_epoch / 20))
    meter = AffinityMeter(len(tasks))

    def measure(batch: Any) -> None:
        batch = batch.to(trainer.device)
        lr = lookahead_lr if lookahead_lr is not None else float(trainer.optimizer.param_groups[0]["lr"])
        meter.update(step_affinity(trainer.model, tasks, batch.features, batch.labels, batch.masks, lr, batch.weights))

    n_epochs = trainer.epochs
    step = 0
    with _Progress(progress, n_epochs, per_epoch) as bar:
        for epoch in range(1, n_epochs + 1):
            bar.start_epoch(epoch)
            schedule.set_epoch(epoch - 1)
            measured = _Measured(schedule, measure, every, step)
            record = trainer.train_epoch(measured, bar)
            step = measured.step
            scheduler = trainer.scheduler
            if scheduler is not None and not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step()
            bar.end_epoch(record["train_loss"], meter.steps, time.perf_counter() - started)

    probe = val_t if val_t is not None else train_t
    per_example = trainer.per_example_losses(probe, trainer.probe_rows)
    columns = [i for i, t in enumerate(pre.tasks) if t.name in trained]
    easy_hard = easy_hard_affinity(per_example[:, columns].double()).float()

    lookahead = meter.mean("lookahead")
    groupings = best_groupings(lookahead, max_groups, overlap=overlap)
    notes = [f"easy/hard agreement on {min(len(probe), trainer.probe_rows)} "
             f"{'validation' if val_t is not None else 'training'} rows",
             f"{'overlapping' if overlap else 'disjoint'} groups; advised: the fewest networks within 5% of the best "
             f"score{' under the budget' if budget is not None else ''}"]
    if lookahead_lr is not None:
        notes.append(f"lookahead learning rate {lookahead_lr:g} (the optimiser's: {cfg.optimizer.lr:g})")
    names = [t.name for t in tasks]
    return AffinityResult(
        tasks=names, lookahead=lookahead, cosine=meter.mean("cosine"), easy_hard=easy_hard,
        lookahead_stderr=meter.standard_error("lookahead"),
        groupings=groupings, advised=advise(groupings, budget), steps=meter.steps, epochs=n_epochs,
        config=cfg.to_dict(), budget=budget, overlap=overlap, seconds=time.perf_counter() - started, notes=notes,
    )
