"""The run's own log: ``metrics.jsonl``, one JSON line per epoch (the default logger)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polytask.registry import LOGGERS
from polytask.train.loggers.base import Logger

#: the file name in the run directory
FILE = "metrics.jsonl"


def jsonable(value: Any) -> Any:
    """``json.dumps`` fallback: tensors as lists, everything else as its string (NaN as null is done
    by the caller's encoder)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


@LOGGERS.register("jsonl")
class JsonlLogger(Logger):
    """``metrics.jsonl`` in the run directory: one line per epoch with the whole record (what
    ``polytask report`` reads). The line is appended and flushed when the epoch ends, so a stopped
    run keeps the epochs it finished."""

    needs_directory = True

    def __init__(self, directory: Path | None, params: Mapping[str, Any] | None = None, *, path: Path | None = None) -> None:
        super().__init__(directory, params)
        self.path = path if path is not None else (directory / FILE if directory is not None else None)

    def log(self, record: Mapping[str, Any]) -> None:
        if self.path is not None:
            with self.path.open("a") as fh:
                fh.write(json.dumps(record, default=jsonable) + "\n")
