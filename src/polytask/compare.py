"""Compare models over several seeds: mean, std and 95% confidence interval of every test metric,
and Delta-m against the single-task baseline paired by seed. Used by ``polytask compare``, the
benchmarks and ``polytask demo``.

Each (model, seed) run selects its epoch on the validation split; only its final test metrics
enter the comparison. Delta-m is computed per seed against the baseline's run with the same seed
(same data and split), then averaged; a difference is *within noise* when the 95% Student-t
interval of its per-seed values includes 0.

:func:`compare` is the whole ``polytask compare`` job: the grid of cells (model x weighting, plus
single-task and the non-neural baselines of :mod:`polytask.baselines`) over seeds, each neural
run saved as a normal run directory, optionally a seeded Optuna search per cell
(:mod:`polytask.tuning`), and ``compare.md``/``.json``/``.html``.
"""

from __future__ import annotations

import copy
import html
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.metrics import delta_m

#: the reference every cell is compared with; added to the grid when not asked for
SINGLE_TASK = "single_task"
#: confidence level of every interval
LEVEL = 0.95
#: within-noise / better / worse marks in the tables
WITHIN, BETTER, WORSE = "≈", "▲", "▼"


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    *head, last = dotted.split(".")
    for part in head:
        d = d.setdefault(part, {})
    d[last] = value


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``update`` wins)."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def run_row(label: str, seed: int, run: Any) -> dict[str, Any]:
    """The comparison row of a trained :class:`~polytask.run.Run`: its validation score (the
    config's ``train.monitor``), validation and test metrics, best epoch, size and speed."""
    from polytask.train.trainer import parse_monitor

    monitor = parse_monitor(run.config.train.monitor, run.tasks, run.model.loss_task_names())
    val = run.metrics.get("validation", {})
    first = run.history[0].get("initial_validation_loss") if run.history else None  # relative_loss
    try:
        score = monitor.score(val, first)
    except (KeyError, TypeError):
        score = float("nan")
    epochs = run.history
    return {
        "model": label,
        "seed": seed,
        "validation_score": score,
        "higher_is_better": monitor.higher_is_better,
        "best_epoch": run.metrics.get("best_epoch"),
        "epochs": len(epochs),
        "seconds_per_epoch": sum(r.get("train_seconds", 0.0) for r in epochs) / max(len(epochs), 1),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "validation": val,
        "test": run.metrics.get("test", {}),
    }


def _slug(label: str) -> str:
    """A label as a folder name: letters, digits, ``.``, ``_`` and ``-`` kept, the rest ``_``."""
    return re.sub(r"[^\w.-]+", "_", label).strip("_") or "run"


def run_grid(
    base: Mapping[str, Any],
    models: Mapping[str, Mapping[str, Any]],
    seeds: Sequence[int],
    *,
    seed_keys: Sequence[str] = ("train.seed",),
    data_dir: str | os.PathLike | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    callbacks: Sequence[Callable[..., None]] = (),
    search: Sequence[Mapping[str, Any]] = ({},),
    out: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Train every model (label -> config overrides, merged into ``base``) with every seed.

    ``seed_keys`` are the config keys set to the seed (add ``data.params.seed`` to regenerate
    synthetic data per seed). ``search`` is a tuning budget shared by all models: each candidate
    override is trained for every (model, seed) and the one with the best *validation* score
    (the config's ``train.monitor``) is kept; its test metrics are the result. Returns one row per
    (model, seed): label, seed, chosen candidate, validation and test metrics, best epoch, seconds
    per epoch. ``callbacks`` go to each run's trainer (called after every epoch). With ``out``, the
    kept run of each (model, seed) is saved as ``<out>/<label>-seed<k>`` (replacing a run there;
    the row's ``directory``), e.g. for ``polytask report``.
    """
    from polytask.api import fit

    rows = []
    for label, override in models.items():
        for seed in seeds:
            best: dict[str, Any] | None = None
            for candidate in search:
                cfg = merge(merge(base, override), candidate)
                for key in seed_keys:
                    _set(cfg, key, seed)
                run = fit(cfg, data_dir=data_dir, callbacks=list(callbacks))
                row = {**run_row(label, seed, run), "candidate": dict(candidate)}
                higher = row.pop("higher_is_better")
                score = row["validation_score"]
                key_score = -score if higher else score
                if best is None or (key_score == key_score and not key_score >= best["_key"]):
                    best = {**row, "_key": key_score, "_run": run}
            assert best is not None
            best.pop("_key")
            kept = best.pop("_run")
            if out is not None:
                directory = Path(out) / f"{_slug(label)}-seed{seed}"
                kept.save(directory, overwrite=True)
                best["directory"] = str(directory)
            rows.append(best)
            if on_result is not None:
                on_result(best)
    return rows


# -- statistics -----------------------------------------------------------------------------------
def confidence_interval(values: Sequence[float], level: float = LEVEL) -> dict[str, float]:
    """``{mean, std, n, ci, low, high}`` of ``values`` (None/NaN left out): ``ci`` is the
    half-width of the Student-t interval of the mean, ``t_{(1+level)/2, n-1} * std / sqrt(n)``
    (NaN with fewer than 2 values)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(kept)
    if n == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "n": 0, "ci": nan, "low": nan, "high": nan}
    mean = statistics.fmean(kept)
    std = statistics.stdev(kept) if n > 1 else 0.0
    half = t_quantile((1 + level) / 2, n - 1) * std / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": mean, "std": std, "n": n, "ci": half, "low": mean - half, "high": mean + half}


#: t_{0.975, df} for df = 1..30 (the 95% two-sided quantile), for installs without scipy
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788, 2.1604,
         2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555,
         2.0518, 2.0484, 2.0452, 2.0423)


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (scipy's; without scipy,
    a table for p = 0.975 and df <= 30, else the Cornish-Fisher expansion around the normal)."""
    try:
        from scipy.stats import t
    except ImportError:
        if p == 0.975 and df <= len(_T975):
            return _T975[df - 1]
        z = statistics.NormalDist().inv_cdf(p)
        return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    return float(t.ppf(p, df))


def within_noise(interval: Mapping[str, float]) -> bool | None:
    """Whether a paired difference's interval includes 0 (None: too few seeds to say)."""
    if interval["n"] < 2 or math.isnan(interval["ci"]):
        return None
    return bool(interval["low"] <= 0.0 <= interval["high"])


def summarize(
    rows: Sequence[Mapping[str, Any]],
    tasks: Sequence[str],
    metrics: Mapping[str, Sequence[str]],
    *,
    baseline: str | None = "single_task",
    split: str = "test",
    delta_metrics: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per model: ``{task: {metric: {mean, std, n, ci, low, high}}}``, ``delta_m`` (vs
    ``baseline``, paired by seed, over ``delta_metrics``, default ``metrics``) with its interval
    and ``within_noise``, ``parameters`` and ``seconds_per_epoch``.

    With a baseline, every metric also gets ``vs_baseline``: the interval of the per-seed
    difference (model - baseline, same seed) and ``within_noise`` (that interval includes 0; None
    with fewer than 2 paired seeds); ``better`` says whether the mean difference goes the metric's
    good way."""
    from polytask.metrics import known_directions

    directions = known_directions()
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    base_by_seed = {r["seed"]: r[split] for r in by_model.get(baseline, [])} if baseline else {}
    out: dict[str, dict[str, Any]] = {}
    for label, runs in by_model.items():
        entry: dict[str, Any] = {}
        paired = [r for r in runs if r["seed"] in base_by_seed]
        for t in tasks:
            entry[t] = {}
            for m in metrics[t]:
                stats = confidence_interval([_metric(r[split], t, m) for r in runs])
                if base_by_seed and label != baseline:
                    diff = confidence_interval([_metric(r[split], t, m) - _metric(base_by_seed[r["seed"]], t, m) for r in paired])
                    up = directions.get(m)
                    stats["vs_baseline"] = {
                        **diff, "within_noise": within_noise(diff),
                        "better": None if up is None or math.isnan(diff["mean"]) else bool((diff["mean"] > 0) == up),
                    }
                entry[t][m] = stats
        deltas = [delta_m(r[split], base_by_seed[r["seed"]], delta_metrics or metrics) for r in paired]
        entry["delta_m"] = confidence_interval(deltas)
        entry["delta_m"]["within_noise"] = within_noise(entry["delta_m"])
        entry["parameters"] = runs[0].get("parameters")
        entry["seconds_per_epoch"] = confidence_interval([r.get("seconds_per_epoch") for r in runs])
        out[label] = entry
    return out


def _metric(per_task: Mapping[str, Any], task: str, metric: str) -> float:
    value = per_task.get(task, {}).get(metric)
    return float("nan") if value is None else float(value)


# -- tables ---------------------------------------------------------------------------------------
def markdown_table(
    summary: Mapping[str, Mapping[str, Any]],
    tasks: Sequence[str],
    metrics: Mapping[str, Sequence[str]],
    *,
    digits: int = 4,
    extra: Mapping[str, Mapping[str, str]] | None = None,
    ci: bool = False,
    baseline: str | None = None,
) -> str:
    """A markdown table: one row per model, ``mean ± std`` per task metric, Delta-m, parameters.

    ``ci=True`` adds the 95% interval of every mean (``[low, high]``) and of Delta-m, and marks
    each metric's difference from ``baseline`` (paired by seed): ≈ within noise (the interval of
    the difference includes 0), ▲ better, ▼ worse beyond noise."""
    extra_cols = sorted({c for cols in (extra or {}).values() for c in cols})
    stl = f"vs {baseline}" if baseline else "vs STL"
    header = (["model"] + [f"{t} {m}" for t in tasks for m in metrics[t]]
              + [f"Δm % ({stl}){' [95% CI]' if ci else ''}", "params"] + extra_cols)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, entry in summary.items():
        cells = [label]
        for t in tasks:
            for m in metrics[t]:
                s = entry[t][m]
                text = f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"
                if ci:
                    text += _interval(s, digits) + _mark(s.get("vs_baseline"))
                cells.append(text)
        d = entry["delta_m"]
        if d["n"] == 0 or (ci and label == baseline):
            cells.append("—")
        else:
            text = f"{d['mean']:+.2f} ± {d['std']:.2f}"
            if ci:
                text += _interval(d, 2, signed=True) + _mark({**d, "better": d["mean"] > 0} if d["n"] else None)
            cells.append(text)
        params = entry.get("parameters")
        cells.append(f"{params:,}" if isinstance(params, int) else "—")
        cells += [(extra or {}).get(label, {}).get(c, "") for c in extra_cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval(s: Mapping[str, Any], digits: int, signed: bool = False) -> str:
    if s["n"] < 2 or math.isnan(s["ci"]):
        return ""
    sign = "+" if signed else ""
    return f" [{s['low']:{sign}.{digits}f}, {s['high']:{sign}.{digits}f}]"


def _mark(diff: Mapping[str, Any] | None) -> str:
    if not diff:
        return ""
    noise = diff.get("within_noise")
    if noise is None:
        return ""
    if noise:
        return f" {WITHIN}"
    return f" {BETTER}" if diff.get("better") else f" {WORSE}"


FOOTNOTE = (f"Mean ± std over seeds [95% Student-t interval of the mean]. Marks compare with {SINGLE_TASK}, paired by "
            f"seed: {WITHIN} within noise (the 95% interval of the per-seed difference includes 0), {BETTER} better / "
            f"{WORSE} worse beyond noise. Δm: multi-task gain in % over {SINGLE_TASK} (higher is better), per seed, "
            "then averaged.")


def html_table(markdown: str, title: str, notes: Sequence[str] = ()) -> str:
    """A small self-contained HTML page (no script, no external resource) showing a markdown
    table as an HTML table, with a title and notes."""
    lines = [ln for ln in markdown.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]

    def cell(tag: str, text: str) -> str:
        cls = ""
        if text.endswith(WITHIN):
            cls = ' class="noise"'
        elif text.endswith(BETTER):
            cls = ' class="better"'
        elif text.endswith(WORSE):
            cls = ' class="worse"'
        return f"<{tag}{cls}>{html.escape(text)}</{tag}>"

    rows = "\n".join("<tr>" + "".join(cell("td", c) for c in r) + "</tr>" for r in body)
    style = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
             "table{border-collapse:collapse;font-size:14px}"
             "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}"
             "th:first-child,td:first-child{text-align:left;font-weight:600}th{background:#f3f3f3}"
             ".noise{color:#555}.better{background:#e6f4ea}.worse{background:#fce8e6}p{max-width:60em}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{style}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n<table>\n"
            f"<thead><tr>{''.join(cell('th', h) for h in header)}</tr></thead>\n"
            f"<tbody>\n{rows}\n</tbody>\n</table>\n"
            + "".join(f"<p>{html.escape(n)}</p>\n" for n in notes) + "</body></html>\n")


# -- the compare job ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One row of the comparison: a neural model with a weighting, or a baseline."""

    label: str
    model: str
    weighting: str | None = None
    baseline: bool = False


def plan_cells(models: Sequence[str], weightings: Sequence[str] = (), baselines: Sequence[str] = ()) -> list[Cell]:
    """The cells of a comparison: ``single_task`` (with equal weighting) first, then every model
    with every weighting (labelled ``<model>-<weighting>`` when weightings are given), then the
    baselines. ConfigError on an unknown model or weighting, listing the known ones."""
    from polytask.errors import ConfigError
    from polytask.registry import MODELS, WEIGHTINGS

    for name in models:
        if name not in MODELS:
            raise ConfigError(f"--models: unknown model {name!r}; known: {', '.join(MODELS.names())}")
    for name in weightings:
        if name not in WEIGHTINGS:
            raise ConfigError(f"--weightings: unknown weighting {name!r}; known: {', '.join(WEIGHTINGS.names())}")
    if not models:
        raise ConfigError("--models: name at least one model")
    cells = [Cell(SINGLE_TASK, SINGLE_TASK, "equal")]
    for m in dict.fromkeys(models):
        if m == SINGLE_TASK:
            continue
        if weightings:
            cells += [Cell(f"{m}-{w}", m, w) for w in dict.fromkeys(weightings)]
        else:
            cells.append(Cell(m, m))
    return cells + [Cell(b, b, baseline=True) for b in baselines]


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``--set`` items for the whole config, and those scoped to one model's cells: the key
    ``<model>.<param>`` (``single_task.hidden=[64]``) sets ``model.<param>`` of that model only."""
    from polytask.registry import MODELS

    common: list[str] = []
    scoped: dict[str, list[str]] = {}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        head, _, rest = key.partition(".")
        if rest and head in MODELS:
            scoped.setdefault(head, []).append(f"{rest}={item.split('=', 1)[1]}" if "=" in item else item)
        else:
            common.append(item)
    return common, scoped


def cell_config(raw: Mapping[str, Any], cell: Cell, scoped: Mapping[str, Sequence[str]] = ()) -> dict[str, Any]:
    """The config of ``cell`` from the comparison's config (a raw dict): the model section keeps
    the keys the cell's model accepts (``embedding_dim``, ``tower_hidden``, ...), then the model's
    scoped overrides; the weighting section is replaced when the cell names another weighting."""
    from polytask.api import signature_defaults
    from polytask.config import apply_overrides
    from polytask.registry import MODELS

    out = merge(raw, {})
    given = dict(out.get("model", {}))
    if given.get("name") != cell.model:
        accepted = signature_defaults(MODELS.get(cell.model), ("input_spec", "tasks"))
        given = {k: v for k, v in given.items() if k in accepted}
    model = {"name": cell.model, **{k: v for k, v in given.items() if k != "name"}}
    out["model"] = apply_overrides(model, list(dict(scoped).get(cell.model, [])))
    if cell.weighting is not None and dict(out.get("weighting", {})).get("name") != cell.weighting:
        out["weighting"] = {"name": cell.weighting}
    out.setdefault("train", {})["progress"] = False
    return out


def run_name(cell: Cell, seed: int) -> str:
    """The cell's run directory name under ``OUT_DIR/runs``."""
    return f"{cell.label}-seed{seed}"


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
