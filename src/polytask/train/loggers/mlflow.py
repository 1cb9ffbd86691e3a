"""MLflow tracking (the ``loggers`` extra: ``mlflow-skinny``).

Where runs go is MLflow's own setting: ``MLFLOW_TRACKING_URI`` (a server, a database or a folder)
and ``MLFLOW_EXPERIMENT_NAME``, else MLflow's default; the MLflow run is named after the polytask
run directory. A run started by the user (``with mlflow.start_run():``) is logged into and left open.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polytask.errors import ConfigError
from polytask.registry import LOGGERS
from polytask.train.loggers.base import Logger, scalars, step_scalars

#: MLflow accepts letters, digits and ``_ - . / : space`` in names; anything else becomes ``_``
_BAD = re.compile(r"[^\w\-./: ]")


def _key(name: str) -> str:
    return _BAD.sub("_", name)


@LOGGERS.register("mlflow")
class MLflowLogger(Logger):
    """The run's resolved config as MLflow parameters (``model.num_experts``), every scalar of the
    run log as a metric: epoch records at the epoch number, logged steps (``step/...``) at the
    optimiser step."""

    def __init__(self, directory: Path | None, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(directory, params)
        try:
            import mlflow
        except ImportError:
            raise ConfigError("train.loggers: mlflow needs the mlflow package "
                              "(pip install 'polytask[loggers]' or pip install mlflow-skinny)") from None
        self.mlflow = mlflow
        self.owned = mlflow.active_run() is None
        if self.owned:
            name = directory.name.removesuffix(".partial") if directory is not None else None
            mlflow.start_run(run_name=name)
        if params:
            flat = {_key(k.replace("/", ".")): v for k, v in _flat_params(params).items()}
            mlflow.log_params(flat)

    def log(self, record: Mapping[str, Any]) -> None:
        epoch = int(record["epoch"])
        self.mlflow.log_metrics({_key(k): v for k, v in scalars(record).items()}, step=epoch)
        for step, values in step_scalars(record):
            self.mlflow.log_metrics({_key(k): v for k, v in values.items()}, step=step)

    def close(self) -> None:
        if self.owned:
            self.mlflow.end_run()


def _flat_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Config values by dotted key; lists and text kept whole (as MLflow shows them)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in _flat_params(value).items()})
        else:
            out[str(key)] = value
    return out
