"""The whole ``polytask compare`` job: every cell over seeds (in worker processes with ``--jobs``),
each neural run saved as a normal run directory, an optional seeded Optuna search per cell
(:mod:`polytask.tuning`), the baselines of :mod:`polytask.baselines`, and
``compare.md``/``.json``/``.html``; ``--resume`` reads the runs already finished."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from polytask.compare.cells import Cell, cell_config, plan_cells, run_name, split_overrides
from polytask.compare.grid import merge, run_row
from polytask.compare.stats import LEVEL, SINGLE_TASK, summarize
from polytask.compare.tables import FOOTNOTE, html_table, markdown_table


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Train one (cell, seed) into its run directory; its row (a worker process's entry point)."""
    from polytask.api import fit

    run = fit(job["config"], data_dir=job["data_dir"], out=job["out"], resume=job["resume"])
    return {**run_row(job["label"], job["seed"], run), "run": str(job["out"])}


def _read_job(label: str, seed: int, directory: Path, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The row of a finished run directory (``--resume``): its metrics.json and epoch log. A run
    trained with another config than the cell's now (``wanted``) is a ConfigError naming the key."""
    from polytask.api import load_run
    from polytask.errors import ConfigError

    run = load_run(directory)
    differs = _first_difference(run.config.to_dict(), wanted)
    if differs is not None:
        key, old, new = differs
        raise ConfigError(f"--resume: {directory} was trained with {key}={old!r}, the comparison now asks "
                          f"{new!r}; resume with the same config and --set, or choose another OUT_DIR")
    return {**run_row(label, seed, run), "run": str(directory), "resumed": True}


def _first_difference(saved: Mapping[str, Any], wanted: Mapping[str, Any],
                      prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first key of ``wanted`` whose value ``saved`` (a run's resolved config) does not hold;
    data file paths compared as absolute paths (a run records them so)."""
    for key, value in wanted.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        have = saved.get(key) if isinstance(saved, Mapping) else None
        if isinstance(value, Mapping):
            found = _first_difference(have if isinstance(have, Mapping) else {}, value, where)
            if found is not None:
                return found
            continue
        if where in ("data.train", "data.validation", "data.test") and value is not None:
            value = str(Path(value).resolve())
        if have != value:
            return where, have, value
    return None


def _tune_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """The Optuna search of one cell on the first seed (a worker process's entry point)."""
    from polytask.api import fit
    from polytask.tuning import apply_values, model_space, tune

    from polytask.errors import TrainingError

    def objective(values: dict[str, Any]) -> float:
        try:
            run = fit(apply_values(job["config"], values), data_dir=job["data_dir"])
        except TrainingError:  # diverged (a learning rate too high): a failed trial, never chosen
            return float("nan")
        return run_row(job["label"], job["seed"], run)["validation_score"]

    higher = _monitor_higher(job["config"])
    result = tune(objective, model_space(job["model"]), job["trials"], higher_is_better=higher, seed=job["seed"])
    return {"label": job["label"], "higher_is_better": higher, **result.to_dict()}


def _monitor_higher(config: Mapping[str, Any]) -> bool:
    """Whether the config's monitor is higher-is-better (read from the monitor's metric name)."""
    from polytask.config import config_from_dict
    from polytask.metrics import higher_is_better

    monitor = config_from_dict(dict(config)).train.monitor
    if monitor == "loss" or monitor.endswith("relative_loss"):
        return False
    return higher_is_better(monitor.rpartition(".")[2])


def _baseline_job(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Fit one baseline on every seed (a worker process's entry point); with ``trials``, tuned on
    the first seed and refitted with the chosen values on the others."""
    from polytask.baselines import BASELINES, fit_baseline, load_tabular
    from polytask.config import config_from_dict

    tasks, splits = load_tabular(config_from_dict(dict(job["config"])), job["data_dir"])
    baseline = BASELINES[job["name"]](threads=job["threads"])
    rows = []
    chosen = None
    for seed in job["seeds"]:
        row = fit_baseline(baseline, tasks, splits, seed, tune=job["trials"] if chosen is None else 0, fixed=chosen)
        if job["trials"] and chosen is None:
            chosen = row["hyperparameters"]
        rows.append(row)
    return rows


def _check_out_dir(out: Path, resume: bool) -> None:
    from polytask.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out}: exists and is not a directory")
    if out.is_dir() and not resume:
        entries = sorted(p.name for p in out.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            raise ConfigError(f"-o {out}: the directory already holds {shown}; choose an empty OUT_DIR, or pass "
                              "--resume to continue the comparison written there")


def _tasks_and_metrics(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
    """Task names, every metric per task (as the runs report them) and the primary metric per
    task (the one Delta-m averages)."""
    first = next(r for r in rows if r.get("test"))
    tasks = [t for t, v in first["test"].items() if isinstance(v, Mapping)]
    metrics = {t: [m for m in first["test"][t] if m not in ("count", "loss")] for t in tasks}
    return tasks, metrics, {t: metrics[t][:1] for t in tasks}


def compare(
    config: str | os.PathLike,
    models: Sequence[str],
    *,
    out: str | os.PathLike,
    weightings: Sequence[str] = (),
    seeds: int = 5,
    jobs: int = 1,
    resume: bool = False,
    tune: int = 0,
    baselines: bool | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | os.PathLike | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """``polytask compare``: train the grid, write ``compare.md``/``.json``/``.html`` under ``out``
    and return what ``compare.json`` holds.

    ``baselines``: True fits LightGBM and linear per task (ConfigError when a feature is not
    numeric/categorical or a task kind not binary/multiclass/regression), False none, None (the
    default) when the data allows. ``overrides`` are ``--set`` items (``<model>.<param>=v``
    scoped to one model). ``jobs`` > 1 trains that many cells at once in spawned processes,
    ``cores // jobs`` torch threads each.
    """
    from polytask.config import load_config
    from polytask.errors import ConfigError
    from polytask.fileio import atomic_write_text, json_dumps, make_dirs
    from polytask.run import is_run_directory

    started = time.time()
    out = Path(out)
    for name, value, low in (("--seeds", seeds, 1), ("--jobs", jobs, 1), ("--tune", tune, 0)):
        if value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}")
    common, scoped = split_overrides(overrides)
    cfg = load_config(config, common)
    raw = cfg.to_dict()
    cells = plan_cells(models, weightings)  # names checked before any data is read
    unknown = sorted(set(scoped) - {c.model for c in cells})
    if unknown:
        raise ConfigError(f"--set {unknown[0]}.…: model {unknown[0]!r} is not compared here (models: "
                          f"{', '.join(c.model for c in cells)})")
    _check_out_dir(out, resume)
    baseline_names = _baseline_names(cfg, data_dir, baselines)
    cells = plan_cells(models, weightings, baseline_names)
    seed_list = list(range(seeds))
    configs = {c.label: cell_config(raw, c, scoped) for c in cells if not c.baseline}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // jobs)
    if jobs > 1:  # a config asking for more threads than a worker's share gets the share
        for c in configs.values():
            if c["train"].get("threads") and c["train"]["threads"] > threads:
                c["train"]["threads"] = threads
    make_dirs(out / "runs")
    reporter = _Reporter(console, total=len(configs) * seeds + len(baseline_names) * seeds)
    executor = _executor(jobs, threads)
    try:
        with reporter:
            tuning = _run_tuning(cells, configs, seed_list[0], tune, out, resume, data_dir, executor, reporter)
            for label, result in tuning.items():
                if result["best"]:
                    from polytask.tuning import apply_values

                    configs[label] = apply_values(configs[label], result["best"])
            rows = _run_cells(cells, configs, seed_list, out, resume, data_dir, executor, reporter, is_run_directory)
            # the baselines use the threads the config allows a run (train.threads), at most a worker's share
            rows += _run_baselines(baseline_names, raw, seed_list, tune, min(cfg.train.threads or threads, threads),
                                   out, resume, data_dir, executor, reporter)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    order = {c.label: i for i, c in enumerate(cells)}
    rows.sort(key=lambda r: (order[r["model"]], r["seed"]))
    tasks, metrics, primary = _tasks_and_metrics(rows)
    summary = summarize(rows, tasks, metrics, baseline=SINGLE_TASK, delta_metrics=primary)
    table = markdown_table(summary, tasks, metrics, ci=True, baseline=SINGLE_TASK)
    delta_note = ("Δm averages " + ", ".join(f"{t} {m[0]}" for t, m in primary.items())
                  + f"; {seeds} seed{'s' if seeds != 1 else ''} ({', '.join(map(str, seed_list))}); model selection on "
                  f"validation ({cfg.train.monitor}), test read once per run.")
    notes = [FOOTNOTE, delta_note]
    if tune:
        notes.append(f"Every cell (baselines included) tuned with the same budget: {tune} Optuna TPE trials on seed "
                     f"{seed_list[0]}, scored on validation only; chosen values in compare.json.")
    title = f"polytask compare: {Path(config).name}"
    markdown = f"# {title}\n\n{table}\n\n" + "\n\n".join(notes) + "\n"
    payload = {
        "config": str(config), "overrides": list(overrides), "models": list(models), "weightings": list(weightings),
        "seeds": seed_list, "jobs": jobs, "tune": tune, "monitor": cfg.train.monitor, "confidence": LEVEL,
        "tasks": tasks, "metrics": metrics, "delta_metrics": primary,
        "cells": {c.label: {"model": c.model, "weighting": c.weighting, "baseline": c.baseline,
                            **({"config": configs[c.label]} if c.label in configs else {}),
                            **({"tuning": tuning[c.label]} if c.label in tuning else {})} for c in cells},
        "summary": summary, "rows": rows, "seconds": time.time() - started,
    }
    for c in cells:  # a tuned baseline's search, from its first seed's row
        first = next((r for r in rows if r["model"] == c.label and "tuning" in r), None)
        if c.baseline and first is not None:
            payload["cells"][c.label]["tuning"] = first["tuning"]
    atomic_write_text(out / "compare.json", json_dumps(payload, indent=1))
    atomic_write_text(out / "compare.md", markdown)
    atomic_write_text(out / "compare.html", html_table(table, title, notes))
    return {**payload, "markdown": markdown, "table": table}


def _baseline_names(cfg: Any, data_dir: Any, wanted: bool | None) -> list[str]:
    """The baselines to fit: every one when the data allows (``wanted`` None or True); a
    ConfigError naming the feature or task when ``wanted`` is True and it does not."""
    from polytask.baselines import BASELINES
    from polytask.errors import ConfigError

    if wanted is False:
        return []
    reason = _tabular_reason(cfg, data_dir)
    if reason is not None:
        if wanted:
            raise ConfigError(f"--baselines: {reason}; pass --no-baselines")
        return []
    return list(BASELINES)


def _tabular_reason(cfg: Any, data_dir: Any) -> str | None:
    """Why the baselines cannot run on the config's data, read from the features and tasks the
    data loading resolves (the data is read once here)."""
    from polytask.baselines import unsupported
    from polytask.data.sources import load_splits

    splits = load_splits(cfg.data, data_dir)
    return unsupported(splits.features, splits.tasks)


class _Reporter:
    """Progress over the comparison's runs: a rich bar with ETA on a terminal, else one plain line
    per finished run (a log file shows progress too)."""

    def __init__(self, console: Any, total: int) -> None:
        from rich.console import Console

        self.console = console or Console()
        self.total = total
        self.done = self.resumed = 0
        self.progress = None
        self.start = time.time()

    def __enter__(self) -> _Reporter:
        if self.console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     console=self.console)
            self.progress.start()
            self.bar = self.progress.add_task("compare", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def note(self, text: str) -> None:
        """A line above the bar (or a plain line)."""
        self.console.print(text, highlight=False, soft_wrap=True)

    def finished(self, row: Mapping[str, Any], count: int = 1) -> None:
        """One more run done (``count`` for a baseline's seeds); a resumed one (read back) does not
        count towards the time a run takes."""
        self.done += count
        if row.get("resumed"):
            self.resumed += count
        shown = ", ".join(f"{t} {next((f'{k} {v:.4f}' for k, v in m.items() if k not in ('count', 'loss')), '')}"
                          for t, m in row.get("test", {}).items() if isinstance(m, Mapping))
        tag = " (resumed)" if row.get("resumed") else ""
        text = f"[{self.done}/{self.total}] {row['model']} seed {row['seed']}{tag}: {shown}"
        if self.progress is not None:
            self.progress.update(self.bar, completed=self.done, description=f"compare: {row['model']}")
        else:
            elapsed = time.time() - self.start
            trained = self.done - self.resumed
            eta = f"{elapsed / trained * (self.total - self.done):.0f} s" if trained else "?"
            text += f" ({elapsed:.0f} s elapsed, ETA {eta})"
        self.note(text)


def _executor(jobs: int, threads: int) -> Any:
    """A pool of ``jobs`` spawned processes (None for ``jobs`` = 1: everything runs here)."""
    if jobs <= 1:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))


def _map(executor: Any, fn: Callable[[Any], Any], jobs: Sequence[Any], done: Callable[[Any, Any], None]) -> None:
    """``fn`` over ``jobs`` (here, or in the pool), calling ``done(job, result)`` as each ends."""
    if executor is None:
        for job in jobs:
            done(job, fn(job))
        return
    from concurrent.futures import as_completed

    futures = {executor.submit(fn, job): job for job in jobs}
    for future in as_completed(futures):
        done(futures[future], future.result())


def _run_tuning(cells: Sequence[Cell], configs: Mapping[str, Any], seed: int, trials: int, out: Path, resume: bool,
                data_dir: Any, executor: Any, reporter: _Reporter) -> dict[str, dict[str, Any]]:
    """The search of every neural cell (saved under ``out/tuning``; reused on ``--resume``)."""
    import json

    from polytask.fileio import atomic_write_text, json_dumps, make_dirs

    if not trials:
        return {}
    make_dirs(out / "tuning")
    results: dict[str, dict[str, Any]] = {}
    jobs = []
    for c in cells:
        if c.baseline:
            continue
        path = out / "tuning" / f"{c.label}.json"
        if resume and path.is_file():
            results[c.label] = json.loads(path.read_text())
            continue
        config = merge(configs[c.label], {"train": {"seed": seed}})
        jobs.append({"label": c.label, "model": c.model, "config": config, "seed": seed, "trials": trials,
                     "data_dir": str(data_dir) if data_dir else None})

    def done(job: Mapping[str, Any], result: dict[str, Any]) -> None:
        results[job["label"]] = result
        atomic_write_text(out / "tuning" / f"{job['label']}.json", json_dumps(result, indent=1))
        reporter.note(f"tuned {job['label']}: {len(result['trials'])} trials, best validation score "
                      f"{result['best_score']:.4f} with {result['best']}")

    _map(executor, _tune_job, jobs, done)
    return results


def _run_cells(cells: Sequence[Cell], configs: Mapping[str, Any], seeds: Sequence[int], out: Path, resume: bool,
               data_dir: Any, executor: Any, reporter: _Reporter,
               is_run: Callable[[Path], bool]) -> list[dict[str, Any]]:
    """Train (or, on ``--resume``, read back) every neural (cell, seed) run."""
    rows: list[dict[str, Any]] = []
    jobs = []
    for c in cells:
        if c.baseline:
            continue
        for seed in seeds:
            directory = out / "runs" / run_name(c, seed)
            config = merge(configs[c.label], {"train": {"seed": seed}})
            if resume and is_run(directory):
                row = _read_job(c.label, seed, directory, config)
                rows.append(row)
                reporter.finished(row)
                continue
            jobs.append({"label": c.label, "seed": seed, "out": str(directory), "resume": resume, "config": config,
                         "data_dir": str(data_dir) if data_dir else None})

    def done(job: Mapping[str, Any], row: dict[str, Any]) -> None:
        rows.append(row)
        reporter.finished(row)

    _map(executor, _train_job, jobs, done)
    return rows


def _run_baselines(names: Sequence[str], raw: Mapping[str, Any], seeds: Sequence[int], trials: int, threads: int,
                   out: Path, resume: bool, data_dir: Any, executor: Any, reporter: _Reporter) -> list[dict[str, Any]]:
    """Fit every baseline on every seed (saved under ``out/baselines``; reused on ``--resume``)."""
    import json

    from polytask.fileio import atomic_write_text, json_dumps, make_dirs

    rows: list[dict[str, Any]] = []
    if not names:
        return rows
    make_dirs(out / "baselines")
    jobs = []
    for name in names:
        path = out / "baselines" / f"{name}.json"
        if resume and path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("seeds") == list(seeds) and saved.get("tune") == trials:
                for row in saved["rows"]:
                    rows.append({**row, "resumed": True})
                    reporter.finished(rows[-1])
                continue
        jobs.append({"name": name, "config": dict(raw), "seeds": list(seeds), "trials": trials, "threads": threads,
                     "data_dir": str(data_dir) if data_dir else None})

    def done(job: Mapping[str, Any], result: list[dict[str, Any]]) -> None:
        atomic_write_text(out / "baselines" / f"{job['name']}.json",
                          json_dumps({"seeds": job["seeds"], "tune": job["trials"], "rows": result}, indent=1))
        for row in result:
            rows.append(row)
            reporter.finished(row)

    _map(executor, _baseline_job, jobs, done)
    return rows
