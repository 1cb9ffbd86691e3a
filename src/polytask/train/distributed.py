"""Launching under ``torchrun``: one process per device, set up from the environment.

``torchrun --nproc_per_node N polytask train config.yaml --out runs/x`` (or ``--nnodes`` for
several machines) starts N copies of the command with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``
set. :func:`setup_from_environment` initialises the default process group once (NCCL on CUDA,
gloo on the CPU) and picks the process's device; the trainer then shards every batch across the
processes and all-reduces the gradients (see :class:`~polytask.train.trainer.Trainer`). Every
process reads the data and evaluates the full validation split, so all take the same early-stopping
decisions; only rank 0 writes the run directory.

The data-parallel step helpers the trainer uses (:func:`world`, :func:`shard`, :func:`globalise`,
:func:`all_reduce`, :func:`all_reduce_grads`) are plain functions of what they need; each is the
identity (or a no-op) in a single process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor, nn

    from polytask.data.table import Batch
    from polytask.tasks import Task


@dataclass
class Launch:
    """Where this process stands: ``world_size`` 1 means a plain single-process run."""

    world_size: int = 1
    rank: int = 0
    device: str = "auto"
    started_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_from_environment(device: str = "auto") -> Launch:
    """Initialise ``torch.distributed`` when started by ``torchrun`` with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Launch(device=device)
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    elif device == "auto":
        device = "cpu"
    started = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        started = True
    return Launch(world_size=dist.get_world_size(), rank=dist.get_rank(), device=device, started_here=started)


def shutdown(launch: Launch, *, failed: bool = False) -> None:
    """Tear down the process group if :func:`setup_from_environment` created it. After a failure
    in this process (``failed``) there is no barrier: the other processes may be waiting in a
    collective this one will never join, so waiting for them would hang every process; this one
    leaves at once, and torchrun stops the others when it sees it exit with an error."""
    if launch.started_here:
        import torch.distributed as dist

        if not failed:
            dist.barrier()
        dist.destroy_process_group()


# -- the data-parallel step ---------------------------------------------------------------------
def world() -> tuple[int, int]:
    """(world size, rank) of an initialised ``torch.distributed`` process group, else (1, 0)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def all_reduce(tensor: Tensor, op: str = "sum", world_size: int = 1) -> Tensor:
    """Sum (``op="sum"``) or average (``"mean"``) ``tensor`` over the processes, into a new tensor
    (``tensor`` itself when ``world_size`` is 1)."""
    if world_size == 1:
        return tensor
    import torch.distributed as dist

    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size if op == "mean" else out


def shard(batch: Batch, rank: int, world_size: int) -> Batch | None:
    """This process's contiguous share of a global batch (None if the batch is too small); the
    last process takes the remainder."""
    from polytask.data.table import Batch

    n = len(batch)
    per = n // world_size
    if per == 0:
        return None
    start = rank * per
    stop = n if rank == world_size - 1 else start + per
    b = batch
    return Batch(*({k: v[start:stop] for k, v in d.items()} for d in (b.features, b.labels, b.masks, b.weights)))


def globalise(losses: Mapping[str, Tensor], batch: Batch, world_size: int, tasks: Sequence[Task]) -> dict[str, Tensor]:
    """Rescale each process's per-task mean loss so that the average over processes is the mean
    over the labelled elements of the whole batch (processes may hold different label counts).
    The count is the task kind's loss denominator (:meth:`TaskKind.loss_count`), so element masks
    (tokens, several labels), row weights and ranking's scored rows count as the loss counts them."""
    import torch

    by_name = {t.name: t for t in tasks}
    names = list(losses)
    local = torch.stack([
        by_name[n].spec.loss_count(batch.labels[n], batch.masks[n], batch.weights.get(n)) for n in names
    ])
    total = all_reduce(local, "sum", world_size)
    factor = torch.where(total > 0, local * world_size / total.clamp_min(1e-12), torch.ones_like(local))
    return {n: losses[n] * factor[i] for i, n in enumerate(names)}


def all_reduce_grads(params: Iterable[nn.Parameter], world_size: int) -> None:
    """Average the gradients of ``params`` (those that have one) over the processes, in one
    flattened all-reduce."""
    import torch

    with_grad = [p for p in params if p.grad is not None]
    if not with_grad or world_size == 1:
        return
    flat = all_reduce(torch.cat([p.grad.reshape(-1) for p in with_grad]), "mean", world_size)
    offset = 0
    for p in with_grad:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n
