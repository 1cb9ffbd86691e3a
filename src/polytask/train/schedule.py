"""Training schedules: which rows, and which tasks' losses, each training step sees.

A schedule is a trainer setting (``train.schedule``), not part of a model, so any architecture can
be trained any way:

* ``joint`` (default): shuffled batches over every row; every task with a label in a row learns
  from it (mixed batches when the rows come from several sources).
* ``round_robin``: the rows are grouped by the set of tasks they are labelled for (in a
  multi-source run: by source) and each batch comes from one group, the groups taking turns
  (a group that runs out drops out of the rotation), so a batch never mixes sources of very
  different lengths or label sets.
* ``jmt``: the Joint Many-Task model's order (Hashimoto et al., EMNLP 2017, Sec. 3): every epoch
  trains the tasks one after another in the order of the run's tasks (bottom up: POS, chunking,
  dependencies, relatedness, entailment), each task a pass over the rows labelled for it with
  only its own loss (the other tasks' masks are cleared). Before each task's pass the model's
  :meth:`~polytask.models.base.MultiTaskModel.begin_task` is called, where JMT snapshots the
  layers below for its successive regularisation.

Every schedule's order for an epoch is a function of ``(seed, epoch)`` only, so a resumed run
continues exactly (:meth:`Schedule.set_epoch`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from polytask.data.loader import BatchLoader
from polytask.data.table import Batch, TensorTable
from polytask.tasks import Task

#: ``train.schedule`` names
SCHEDULES = ("joint", "round_robin", "jmt")


class Schedule:
    """An epoch of training steps: iterating yields ``(batch, task)``, ``task`` the only task
    trained on that batch or None (every task). ``begin_task`` (the model's hook) is called when
    the trained task changes."""

    def __init__(self, table: TensorTable, tasks: Sequence[Task], batch_size: int, *, seed: int = 0,
                 begin_task: Callable[[str | None], None] | None = None) -> None:
        self.table, self.tasks, self.batch_size, self.seed = table, list(tasks), batch_size, seed
        self.begin_task = begin_task or (lambda name: None)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The next iteration yields epoch ``epoch``'s order (counted from 0)."""
        if epoch < 0:
            raise ValueError("epoch must be >= 0")
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[Batch, str | None]]:
        raise NotImplementedError


class JointSchedule(Schedule):
    """Shuffled batches over every row, every task (the loader's order: unchanged from before
    schedules existed)."""

    def __init__(self, table: TensorTable, tasks: Sequence[Task], batch_size: int, **kw) -> None:
        super().__init__(table, tasks, batch_size, **kw)
        self.loader = BatchLoader(table, batch_size, shuffle=True, seed=self.seed)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Batch, str | None]]:
        self.epoch += 1
        for batch in self.loader:
            yield batch, None


def labelled_rows(table: TensorTable, task: Task) -> Tensor:
    """``[N]`` bool: the rows holding at least one label of ``task``."""
    mask = table.masks[task.name].bool()
    return mask if mask.dim() == 1 else mask.flatten(1).any(1)


def _batches(rows: Tensor, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    order = rows[torch.randperm(len(rows), generator=generator)]
    return list(order.split(batch_size))


class RoundRobinSchedule(Schedule):
    """Each batch from one group of rows labelled for the same tasks; the groups take turns."""

    def __init__(self, table: TensorTable, tasks: Sequence[Task], batch_size: int, **kw) -> None:
        super().__init__(table, tasks, batch_size, **kw)
        signature = torch.zeros(table.num_rows, dtype=torch.long)
        for i, t in enumerate(self.tasks):
            signature |= labelled_rows(table, t).long() << i
        self.groups = [torch.nonzero(signature == s).flatten() for s in signature.unique().tolist() if s != 0]

    def __len__(self) -> int:
        return sum(-(-len(g) // self.batch_size) for g in self.groups)

    def __iter__(self) -> Iterator[tuple[Batch, str | None]]:
        g = self._generator()
        self.epoch += 1
        queues = [_batches(rows, self.batch_size, g) for rows in self.groups]
        while any(queues):
            for q in queues:
                if q:
                    yield self.table.take(q.pop(0)), None


class JMTSchedule(Schedule):
    """Every epoch, each task in turn (the run's task order, bottom up), on its own rows with only
    its own loss (Hashimoto et al. 2017)."""

    def __init__(self, table: TensorTable, tasks: Sequence[Task], batch_size: int, **kw) -> None:
        super().__init__(table, tasks, batch_size, **kw)
        self.rows = {t.name: torch.nonzero(labelled_rows(table, t)).flatten() for t in self.tasks}

    def __len__(self) -> int:
        return sum(-(-len(r) // self.batch_size) for r in self.rows.values())

    def __iter__(self) -> Iterator[tuple[Batch, str | None]]:
        g = self._generator()
        self.epoch += 1
        for task in self.tasks:
            self.begin_task(task.name)
            for index in _batches(self.rows[task.name], self.batch_size, g):
                batch = self.table.take(index)
                for name, mask in batch.masks.items():
                    if name != task.name:
                        batch.masks[name] = torch.zeros_like(mask)
                yield batch, task.name
        self.begin_task(None)  # evaluation and anything after the epoch see every task again


def make_schedule(name: str, table: TensorTable, tasks: Sequence[Task], batch_size: int, *, seed: int = 0,
                  begin_task: Callable[[str | None], None] | None = None) -> Schedule:
    """The schedule called ``name`` (one of :data:`SCHEDULES`)."""
    classes = {"joint": JointSchedule, "round_robin": RoundRobinSchedule, "jmt": JMTSchedule}
    if name not in classes:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    return classes[name](table, tasks, batch_size, seed=seed, begin_task=begin_task)
