"""TensorBoard event files in ``<run>/tensorboard`` (the ``loggers`` extra: ``tensorboard``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polytask.errors import ConfigError
from polytask.registry import LOGGERS
from polytask.train.loggers.base import Logger, scalars, step_scalars

#: the folder in the run directory (``tensorboard --logdir <run>/tensorboard``)
FOLDER = "tensorboard"


@LOGGERS.register("tensorboard")
class TensorBoardLogger(Logger):
    """Every scalar of the run log as a TensorBoard scalar: epoch records at the epoch number,
    logged steps (``step/...``: task weights, gradient cosines and norms) at the optimiser step."""

    needs_directory = True

    def __init__(self, directory: Path | None, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(directory, params)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.loggers: tensorboard needs the tensorboard package "
                              "(pip install 'polytask[loggers]' or pip install tensorboard)") from None
        assert directory is not None
        self.writer = SummaryWriter(log_dir=str(directory / FOLDER))

    def log(self, record: Mapping[str, Any]) -> None:
        epoch = int(record["epoch"])
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, epoch)
        for step, values in step_scalars(record):
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
