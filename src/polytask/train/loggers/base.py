"""What every logger is given: the run log's records, flattened into named scalars.

The trainer writes one record per epoch (training losses, task weights, validation metrics, the
monitored score, regularisation terms, diagnostics such as gate weights) and, inside it, one record
per logged optimiser step (``steps``: task weights, task-gradient cosines and norms, every
``train.log_every`` steps). A logger receives each epoch's record whole; :func:`scalars` turns it into
``name -> value`` pairs (``validation/income/auc``, ``weights/income``, ``gates/income/3``) at the
epoch, and the step records into the same at their optimiser step (``step/cosine/income_vs_married``),
so that every number in the log reaches every logger without one line per key.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: record keys that are not measurements (the epoch is the x axis; steps are flattened on their own)
NOT_SCALARS = frozenset({"epoch", "steps", "structure"})


def _walk(prefix: str, value: Any) -> Iterator[tuple[str, float]]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        if math.isfinite(value):
            yield prefix, float(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(f"{prefix}/{k}" if prefix else str(k), v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(f"{prefix}/{i}", v)


def _cosine_scalars(log: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """A logged step's ``cosine`` entry by task names: one scalar per task pair and per task norm."""
    names, matrix = log["tasks"], log["matrix"]
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            yield f"cosine/{a}_vs_{names[j]}", float(matrix[i][j])
    for name, norm in zip(names, log.get("norms", ())):
        yield f"grad_norm/{name}", float(norm)


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """Every finite number of an epoch record (not its ``steps``), by its path of keys."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key not in NOT_SCALARS:
            out.update(_walk(key, value))
    return out


def step_scalars(record: Mapping[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """``(optimiser step, scalars)`` of each logged step of an epoch record, named ``step/...``."""
    out = []
    for entry in record.get("steps", ()):
        values: dict[str, float] = {}
        for key, value in entry.items():
            if key == "step":
                continue
            if key == "cosine" and isinstance(value, Mapping) and "matrix" in value:
                values.update((f"step/{k}", v) for k, v in _cosine_scalars(value))
            else:
                values.update((f"step/{k}", v) for k, v in _walk(key, value))
        out.append((int(entry["step"]), values))
    return out


class Logger:
    """Receives every epoch record of a run (rank 0 of a torchrun only) and is closed at the end
    of training, also when training fails. ``directory`` is the run directory being written
    (None when the run is not saved); ``params`` the run's resolved config."""

    #: whether the logger needs a run directory to write into
    needs_directory = False

    def __init__(self, directory: Path | None, params: Mapping[str, Any] | None = None) -> None:
        self.directory, self.params = directory, params

    def log(self, record: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release what the logger holds (called once)."""
