"""Launching under ``torchrun``: one process per device, set up from the environment.

``torchrun --nproc_per_node N polytask train config.yaml --out runs/x`` (or ``--nnodes`` for
several machines) starts N copies of the command with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``
set. :func:`setup_from_environment` initialises the default process group once (NCCL on CUDA,
gloo on the CPU) and picks the process's device; the trainer then shards every batch across the
processes and all-reduces the gradients (see :class:`~polytask.train.trainer.Trainer`). Every
process reads the data and evaluates the full validation split, so all take the same early-stopping
decisions; only rank 0 writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


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


def shutdown(launch: Launch) -> None:
    """Tear down the process group if :func:`setup_from_environment` created it."""
    if launch.started_here:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
