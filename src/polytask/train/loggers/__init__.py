"""Where a run's log goes: ``train.loggers: [jsonl, tensorboard, mlflow]`` (``jsonl`` alone by default).

Each logger receives every epoch record of the run (see :mod:`polytask.train.loggers.base`); the
package behind one (tensorboard, mlflow) is imported only when it is chosen. Adding a logger is a
file here with a ``@LOGGERS.register`` class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polytask.errors import ConfigError
from polytask.registry import LOGGERS
from polytask.train.loggers import jsonl, mlflow, tensorboard  # noqa: F401  (registration)
from polytask.train.loggers.base import Logger, scalars, step_scalars

__all__ = ["Logger", "check_loggers", "create_loggers", "scalars", "step_scalars"]


def check_loggers(names: Sequence[str], directory: Path | None) -> None:
    """A ConfigError naming ``train.loggers`` for an unknown logger, or one that writes into a run
    directory when the run has none; checked when the trainer is built, before anything runs."""
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"train.loggers: unknown logger {name!r}; registered: {', '.join(LOGGERS.names())}")
        if name != "jsonl" and LOGGERS.get(name).needs_directory and directory is None:
            raise ConfigError(f"train.loggers: {name} writes into the run directory; give the run one "
                              "(--out, or out= in polytask.fit)")


def create_loggers(names: Sequence[str], directory: Path | None, params: Mapping[str, Any] | None = None,
                   *, jsonl_path: Path | None = None) -> list[Logger]:
    """The loggers named in ``train.loggers`` (unknown names and a logger that needs a run
    directory when there is none are one ConfigError each). ``jsonl_path`` overrides where the
    JSONL log goes (default ``<directory>/metrics.jsonl``)."""
    check_loggers(names, directory)
    out: list[Logger] = []
    for name in dict.fromkeys(names):
        cls = LOGGERS.get(name)
        if name == "jsonl":
            if jsonl_path is not None or directory is not None:
                out.append(cls(directory, params, path=jsonl_path))
            continue  # a run that is not saved has no log file: its history is on the Run
        out.append(cls(directory, params))
    return out
