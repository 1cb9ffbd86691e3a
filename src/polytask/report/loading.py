"""Reading run directories for the report: what each section draws from.

A run is read as much as it can be: the model is loaded (with every check of
:meth:`polytask.run.Run.load`) for its parameter count and the calibration section's predictions;
when it cannot be (a damaged checkpoint), the report still shows the run's logs and metrics and says
why the rest is missing. A damaged line of ``metrics.jsonl`` is skipped with a
:class:`~polytask.run.RunFileWarning` (the other epochs are reported).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polytask.errors import DataError
from polytask.run import CONFIG, ENCODERS, LOG, METRICS, Run, RunFileWarning, _load_log, _load_metrics, is_run_directory


@dataclass
class RunData:
    """One run as the report sees it. ``config`` is the plain ``config.yaml`` mapping (every
    section a dict), ``history`` the epoch records of ``metrics.jsonl``, ``metrics`` the final
    ``metrics.json``; ``run`` is the loaded model, None when it could not be loaded
    (``load_error`` says why)."""

    path: Path
    name: str
    config: dict[str, Any]
    tasks: list[tuple[str, str]]
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    best_epoch: int | None = None
    parameters: int | None = None
    run: Run | None = None
    load_error: str | None = None
    #: anything a section may want to keep between sections (e.g. the calibration's predictions)
    cache: dict[str, Any] = field(default_factory=dict)

    # -- the config -----------------------------------------------------------------------------
    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def model_name(self) -> str:
        return str(self.section("model").get("name", "?"))

    @property
    def weighting_name(self) -> str:
        return str(self.section("weighting").get("name", "?"))

    @property
    def task_names(self) -> list[str]:
        return [name for name, _ in self.tasks]

    # -- the log --------------------------------------------------------------------------------
    @property
    def epochs(self) -> list[int]:
        return [int(r["epoch"]) for r in self.history if isinstance(r.get("epoch"), (int, float))]

    def series(self, *keys: str) -> list[tuple[int, Any]]:
        """``(epoch, record[k0][k1]...)`` for every epoch record holding that path."""
        out = []
        for record in self.history:
            value: Any = record
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None and isinstance(record.get("epoch"), (int, float)):
                out.append((int(record["epoch"]), value))
        return out

    def steps(self) -> list[dict[str, Any]]:
        """Every logged step (``steps`` of each epoch record, every ``train.log_every`` optimiser
        steps), in order, each with the ``epoch`` it belongs to."""
        out = []
        for record in self.history:
            for step in record.get("steps") or ():
                if isinstance(step, dict) and isinstance(step.get("step"), (int, float)):
                    out.append({**step, "epoch": record.get("epoch")})
        return out

    def diagnostics(self, key: str) -> list[tuple[int, Any]]:
        """``(epoch, record["diagnostics"][key])`` for every epoch that logged ``key``."""
        return self.series("diagnostics", key)

    def diagnostic_keys(self) -> list[str]:
        """Every key the model logged in ``diagnostics`` over the run, in the order first seen."""
        keys: dict[str, None] = {}
        for record in self.history:
            diag = record.get("diagnostics")
            if isinstance(diag, dict):
                keys.update(dict.fromkeys(diag))
        return list(keys)


def check_run_directories(run_dirs: Sequence[str | os.PathLike]) -> list[Path]:
    """The paths as :class:`~pathlib.Path`; a DataError naming the first that is not a polytask
    run directory (before anything is read)."""
    if not run_dirs:
        raise DataError("report: no run directory given")
    paths = [Path(p) for p in run_dirs]
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: run directory not found")
        if not path.is_dir():
            raise DataError(f"{path}: not a directory (give a run directory written by `polytask train`)")
        if not is_run_directory(path):
            raise DataError(f"{path}: not a polytask run directory (no manifest.json, or config.yaml, encoders.json "
                            "and model.pt are missing)")
    return paths


def load_runs(run_dirs: Sequence[str | os.PathLike]) -> list[RunData]:
    """Check every path first (:func:`check_run_directories`), then read each run; runs whose
    directories share a name are told apart by their parent folder."""
    paths = check_run_directories(run_dirs)
    names = [p.resolve().name or str(p) for p in paths]
    if len(set(names)) < len(names):
        names = [_longer_name(p, names) for p in paths]
    return [load_run_data(p, name) for p, name in zip(paths, names)]


def _longer_name(path: Path, names: list[str]) -> str:
    parts = path.resolve().parts
    return "/".join(parts[-2:]) if names.count(path.resolve().name) > 1 else parts[-1]


def load_run_data(path: Path, name: str | None = None) -> RunData:
    """One run directory (already known to be one)."""
    name = name or path.resolve().name
    run: Run | None = None
    error: str | None = None
    try:
        run = Run.load(path, device="cpu")
    except DataError as exc:
        error = str(exc)
        warnings.warn(f"{path}: the model cannot be loaded, the report shows its logs only ({exc})",
                      RunFileWarning, stacklevel=2)
    if run is not None:
        config = run.config.to_dict()
        tasks = [(t.name, t.kind) for t in run.tasks]
        history, metrics = run.history, run.metrics
        parameters: int | None = sum(p.numel() for p in run.model.parameters())
    else:
        config = _read_yaml(path / CONFIG)
        tasks = _read_tasks(path, config)
        history, metrics = _load_log(path / LOG), _load_metrics(path / METRICS)
        parameters = None
    data = RunData(path=path, name=name, config=config, tasks=tasks, history=history, metrics=metrics,
                   parameters=parameters, run=run, load_error=error)
    data.best_epoch = best_epoch(data)
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        value = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_tasks(path: Path, config: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, kind)`` of each task: from ``encoders.json``, else the config's task list."""
    try:
        tasks = json.loads((path / ENCODERS).read_text())["tasks"]
        return [(str(t["name"]), str(t.get("kind", "binary"))) for t in tasks]
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    return [(str(t.get("name")), str(t.get("kind", "binary"))) for t in data.get("tasks") or () if isinstance(t, dict)]


def best_epoch(data: RunData) -> int | None:
    """The epoch of the saved checkpoint: ``metrics.json``'s ``best_epoch``, else the best
    monitored validation score in the log (in the monitor's direction)."""
    value = data.metrics.get("best_epoch")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    scores = [(epoch, _first_number(m)) for epoch, m in data.series("monitor")]
    scores = [(e, s) for e, s in scores if s is not None and math.isfinite(s)]
    if not scores:
        return None
    monitor = str(data.section("train").get("monitor", "mean.relative_loss"))
    higher = _higher_is_better(monitor)
    pick = max if higher else min
    return pick(scores, key=lambda es: es[1])[0]  # the first of equal scores, as the trainer keeps it


def _first_number(value: Any) -> float | None:
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _higher_is_better(monitor: str) -> bool:
    from polytask.metrics import known_directions

    metric = monitor.rpartition(".")[2]
    return bool(known_directions().get(metric, False))
