"""``polytask affinity`` (TAG lookahead affinity + network selection, Fifty et al., NeurIPS 2021):
does it find planted task structure, and does its advice pay off on real data?

1. **Planted structure.** Generated tabular data (:func:`planted_tables`): tasks ``a1, a2`` are one
   hidden nonlinear function of the features plus independent noise, ``b1, b2`` another, unrelated
   one, ``c`` a third; ``affinity`` (a short shared-bottom run) must propose
   ``{a1, a2} {b1, b2} {c}`` for at most 3 networks, in at least 9 of 10 seeds.
2. **Real data.** Census-income task groups 1-3 and MovieLens-100K: what ``affinity`` advises
   (shared-bottom, few epochs, rows reduced: see ``REAL``), and, where the advice is not "all
   together", whether training the advised groups beats training all tasks together: Delta-m of
   the test metrics (``polytask.metrics.delta_m``) of each against single-task networks, 3 seeds,
   paired by seed (each task's metrics come from the network that serves it).

Run: ``python benchmarks/affinity.py`` (``--help``); writes ``results/affinity.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PLANTED = [["a1", "a2"], ["b1", "b2"], ["c"]]
PLANTED_TASKS = ["a1", "a2", "b1", "b2", "c"]


def _hidden_function(rng: np.random.Generator, x: np.ndarray, width: int = 6) -> np.ndarray:
    """A random one-hidden-layer tanh network of the features, standardised."""
    w = rng.normal(size=(x.shape[1], width)) / np.sqrt(x.shape[1]) * 2.0
    v = rng.normal(size=width)
    f = np.tanh(x @ w) @ v
    return (f - f.mean()) / f.std()


def planted_tables(n: int, seed: int, *, features: int = 10, noise: float = 0.3) -> dict[str, Any]:
    """``{"train", "validation"}`` pyarrow tables of ``n`` and ``n // 4`` rows: numeric features
    ``x0..`` (standard normal), regression tasks ``a1, a2`` = f_a(x) + noise, ``b1, b2`` = f_b(x) +
    noise, ``c`` = f_c(x) + noise, with f_a, f_b, f_c independent random functions of all the
    features (drawn from ``seed``) and independent noise per task and row."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    total = n + n // 4
    x = rng.normal(size=(total, features))
    hidden = {name: _hidden_function(rng, x) for name in "abc"}
    columns: dict[str, Any] = {f"x{i}": x[:, i].round(5) for i in range(features)}
    for task in PLANTED_TASKS:
        columns[task] = (hidden[task[0]] + noise * rng.normal(size=total)).round(5)
    table = pa.table(columns)
    return {"train": table.slice(0, n), "validation": table.slice(n)}


def planted_config(folder: Path, *, epochs: int = 3, seed: int = 0) -> dict[str, Any]:
    """The config of a short shared-bottom run on the CSV files :func:`write_planted` wrote."""
    return {
        "name": "planted",
        "data": {"train": str(folder / "train.csv"), "validation": str(folder / "valid.csv"),
                 "features": {"numeric": [f"x{i}" for i in range(10)]},
                 "tasks": [{"name": t, "kind": "regression"} for t in PLANTED_TASKS]},
        "model": {"name": "shared_bottom", "bottom_hidden": [32], "tower_hidden": [8]},
        "optimizer": {"name": "adam", "lr": 0.003},
        "train": {"epochs": epochs, "batch_size": 128, "seed": seed, "progress": False, "device": "cpu"},
    }


def write_planted(folder: Path, n: int, seed: int) -> dict[str, Any]:
    """Write ``train.csv`` and ``valid.csv`` of :func:`planted_tables` into ``folder``; return
    :func:`planted_config` for them (training seed = data seed)."""
    import pyarrow.csv as pacsv

    tables = planted_tables(n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(tables["train"], folder / "train.csv")
    pacsv.write_csv(tables["validation"], folder / "valid.csv")
    return planted_config(folder, seed=seed)


def planted_found(result: Any, k: int = 3) -> bool:
    """Whether the best grouping into at most ``k`` networks is exactly the planted one."""
    groups = result.groupings[k - 1].named(result.tasks)["groups"]
    return sorted(map(sorted, groups)) == sorted(map(sorted, PLANTED))


def run_planted(seeds: list[int], n: int, epochs: int) -> dict[str, Any]:
    from polytask.analysis.lookahead import measure_affinity

    rows, example = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            cfg = write_planted(Path(tmp) / str(seed), n, seed)
            start = time.perf_counter()
            result = measure_affinity(cfg, epochs=epochs, progress=False)
            found = planted_found(result)
            rows.append({"seed": seed, "found": found, "k3": result.groupings[2].named(result.tasks),
                         "advised": result.advised.named(result.tasks), "seconds": round(time.perf_counter() - start, 1)})
            print(f"planted seed {seed}: {'found' if found else 'MISSED'} {rows[-1]['k3']['groups']}", flush=True)
            if example is None:
                example = result.to_dict()
    return {"rows": rows, "passed": sum(r["found"] for r in rows), "seeds": len(seeds), "rows_per_seed": n,
            "epochs": epochs, "example": example}


# -- real data ------------------------------------------------------------------------------------------
SHARED_BOTTOM = {"name": "shared_bottom", "bottom_hidden": [64], "tower_hidden": [8]}
SINGLE_TASK = {"name": "single_task", "hidden": [32], "tower_hidden": [8]}
CENSUS_TASKS = {1: ["income", "never_married"], 2: ["education_college", "never_married"],
                3: ["income", "education_college", "never_married"]}


def census_config(group: int, rows: int, epochs: int) -> dict[str, Any]:
    return {
        "name": f"census-group{group}",
        "data": {"dataset": "census_income", "params": {"group": group, "split_seed": 0, "max_rows": rows}},
        "model": dict(SHARED_BOTTOM),
        "optimizer": {"name": "adam", "lr": 0.001},
        "train": {"epochs": epochs, "batch_size": 512, "patience": 3, "monitor": "mean.relative_loss",
                  "progress": False, "device": "cpu", "seed": 0},
    }


def movielens_config(users: int, epochs: int) -> dict[str, Any]:
    return {
        "name": "movielens",
        "data": {"dataset": "movielens_100k",
                 "params": {"max_len": 20, "max_users": users, "tasks": ["like", "rating", "gender", "age_group"]}},
        "model": {**SHARED_BOTTOM, "embedding_dim": 8},
        "optimizer": {"name": "adam", "lr": 0.001},
        "train": {"epochs": epochs, "batch_size": 512, "patience": 2, "monitor": "mean.relative_loss",
                  "progress": False, "device": "cpu", "seed": 0},
    }


def with_tasks(cfg: dict[str, Any], tasks: list[str], all_tasks: list[str], model: dict[str, Any] | None = None) -> dict[str, Any]:
    """``cfg`` training only ``tasks`` (a dataset's own task selection where it has one)."""
    out = copy.deepcopy(cfg)
    if model is not None:
        out["model"] = copy.deepcopy(model)
    params = out["data"]["params"]
    if "tasks" in params:  # MovieLens: the dataset picks its tasks
        params["tasks"] = [t for t in all_tasks if t in tasks]
    elif set(tasks) != set(all_tasks):  # census: group 3 holds every task; name the ones kept
        params["group"] = 3
        out["data"]["tasks"] = [{"name": t, "kind": "binary", "label": t} for t in all_tasks if t in tasks]
    return out


def _test_metrics(cfg: dict[str, Any], seed: int, data_dir: str | None) -> dict[str, Any]:
    from polytask.api import fit

    cfg = copy.deepcopy(cfg)
    cfg["train"]["seed"] = seed
    run = fit(cfg, data_dir=data_dir)
    return {k: v for k, v in run.metrics["test"].items() if isinstance(v, dict)}


def compare_advice(cfg: dict[str, Any], tasks: list[str], advised: dict[str, Any], seeds: list[int],
                   data_dir: str | None) -> dict[str, Any]:
    """Delta-m against single-task networks, per seed: all tasks together vs the advised groups
    (each task's metrics from the network that serves it)."""
    from polytask.metrics import delta_m

    per_seed = []
    for seed in seeds:
        single = _test_metrics(with_tasks(cfg, tasks, tasks, SINGLE_TASK), seed, data_dir)
        together = _test_metrics(cfg, seed, data_dir)
        grouped: dict[str, Any] = {}
        for group, serves in zip(advised["groups"], advised["serves"]):
            metrics = _test_metrics(with_tasks(cfg, group, tasks), seed, data_dir)
            grouped.update({t: metrics[t] for t in serves})
        row = {"seed": seed, "together": delta_m(together, single), "advised": delta_m(grouped, single),
               "metrics": {"single": single, "together": together, "advised": grouped}}
        per_seed.append(row)
        print(f"  seed {seed}: Delta-m together {row['together']:+.2f}, advised {row['advised']:+.2f}", flush=True)

    def stats(key: str) -> dict[str, float]:
        values = [r[key] for r in per_seed]
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    diffs = [r["advised"] - r["together"] for r in per_seed]
    return {"seeds": per_seed, "together": stats("together"), "advised": stats("advised"),
            "advised_minus_together": {"mean": statistics.fmean(diffs), "per_seed": diffs,
                                       "wins": sum(d > 0 for d in diffs)}}


def run_real(name: str, cfg: dict[str, Any], tasks: list[str], epochs: int, seeds: list[int],
             data_dir: str | None) -> dict[str, Any]:
    from polytask.analysis.lookahead import measure_affinity

    start = time.perf_counter()
    result = measure_affinity(cfg, data_dir=data_dir, epochs=epochs, progress=False)
    advised = result.advised.named(result.tasks)
    out: dict[str, Any] = {"affinity": result.to_dict(), "advised": advised}
    print(f"{name}: advised {advised['groups']} (lookahead {result.lookahead.tolist()})", flush=True)
    if len(advised["groups"]) == 1:
        out["comparison"] = "advice is all tasks together: nothing to compare"
    else:
        out["comparison"] = compare_advice(cfg, tasks, advised, seeds, data_dir)
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


# -- report ---------------------------------------------------------------------------------------------
def _groups(groups: list[list[str]]) -> str:
    return " ".join("{" + ", ".join(g) + "}" for g in groups)


def markdown(payload: dict[str, Any]) -> str:
    planted = payload.get("planted")
    lines = ["# `polytask affinity`: planted structure and real data", "",
             f"Environment: {payload['environment']}", ""]
    if planted:
        lines += ["## Planted structure", "",
                  f"Tasks a1, a2 = f_a(x) + noise, b1, b2 = f_b(x) + noise, c = f_c(x) + noise (independent random "
                  f"tanh networks of 10 standard-normal features, noise sd 0.3); {planted['rows_per_seed']} training rows, "
                  f"shared bottom [32], Adam lr 0.003, {planted['epochs']} epochs; planted grouping "
                  f"{_groups(PLANTED)} for at most 3 networks.", "",
                  f"**Found in {planted['passed']} of {planted['seeds']} seeds** (acceptance: at least 9 of 10).", "",
                  "| seed | best grouping, at most 3 networks | found | advised | seconds |", "|---|---|---|---|---|"]
        for r in planted["rows"]:
            lines.append(f"| {r['seed']} | {_groups(r['k3']['groups'])} | {'yes' if r['found'] else 'no'} | "
                         f"{_groups(r['advised']['groups'])} | {r['seconds']} |")
        ex = planted["example"]
        lines += ["", f"Matrices of seed {planted['rows'][0]['seed']} (row acts on column):", ""]
        for key in ("lookahead", "cosine", "easy_hard"):
            lines += [f"**{key}**", "", "| | " + " | ".join(ex["tasks"]) + " |", "|---|" + "---:|" * len(ex["tasks"])]
            for name, row in zip(ex["tasks"], ex[key]):
                lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.4g}" for v in row) + " |")
            lines.append("")
    real = payload.get("real", {})
    if real:
        lines += ["## Real data", "", payload.get("real_protocol", ""), "",
                  "| data | tasks | advised | Delta-m together | Delta-m advised | advised - together (wins) |",
                  "|---|---|---|---|---|---|"]
        for name, r in real.items():
            tasks = ", ".join(r["affinity"]["tasks"])
            comp = r["comparison"]
            if isinstance(comp, str):
                lines.append(f"| {name} | {tasks} | {_groups(r['advised']['groups'])} (all together) | - | - | {comp} |")
            else:
                lines.append(f"| {name} | {tasks} | {_groups(r['advised']['groups'])} | "
                             f"{comp['together']['mean']:+.2f} ± {comp['together']['std']:.2f} | "
                             f"{comp['advised']['mean']:+.2f} ± {comp['advised']['std']:.2f} | "
                             f"{comp['advised_minus_together']['mean']:+.2f} "
                             f"({comp['advised_minus_together']['wins']}/{len(comp['seeds'])}) |")
        total = sum(r.get("seconds", 0) for r in real.values())
        lines += ["", f"Wall time of the real-data part: {total / 60:.0f} min (affinity runs and comparisons, 2 shared "
                      "CPU cores under other load).", "",
                  "Read with care: the advised groups train more networks (2 instead of 1, so more parameters) "
                  "than all tasks together; the runs are short (few epochs, reduced rows), so seed noise is large "
                  "(std of Delta-m about 2-6 points) and 3 seeds only show the direction. The lookahead values are "
                  "small because the lookahead is a plain SGD step at Adam's learning rate (1e-3); only their "
                  "relative sizes enter the grouping. Where the advice is all tasks together there is nothing to "
                  "compare.", "",
                  "Lookahead affinity per data set (row acts on column, mean over the measured steps):", ""]
        for name, r in real.items():
            a = r["affinity"]
            lines += [f"**{name}** ({a['steps']} steps, {a['epochs']} epochs)", "",
                      "| | " + " | ".join(a["tasks"]) + " |", "|---|" + "---:|" * len(a["tasks"])]
            for t, row in zip(a["tasks"], a["lookahead"]):
                lines.append(f"| {t} | " + " | ".join("-" if v is None else f"{v:.3g}" for v in row) + " |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--planted-seeds", type=int, default=10)
    ap.add_argument("--planted-rows", type=int, default=3000)
    ap.add_argument("--planted-epochs", type=int, default=3)
    ap.add_argument("--real", nargs="*", default=["census1", "census2", "census3", "movielens"],
                    help="real-data parts to run (none: planted only)")
    ap.add_argument("--census-rows", type=int, default=20000, help="census max_rows (of the 99,762-row file)")
    ap.add_argument("--movielens-users", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=4, help="epochs of the real-data runs (affinity and comparisons)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import RESULTS, environment, write_results

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    previous = RESULTS / "affinity.json"
    payload: dict[str, Any] = {"environment": environment()}
    if args.planted_seeds:
        payload["planted"] = run_planted(list(range(args.planted_seeds)), args.planted_rows, args.planted_epochs)
    elif previous.is_file():  # keep the planted part of an earlier run
        payload["planted"] = json.loads(previous.read_text()).get("planted")
    seeds = list(range(args.seeds))
    real: dict[str, Any] = {}
    for part in args.real:
        if part.startswith("census"):
            group = int(part.removeprefix("census"))
            cfg = census_config(group, args.census_rows, args.epochs)
            real[f"census group {group}"] = run_real(part, cfg, CENSUS_TASKS[group], args.epochs, seeds, args.data_dir)
        elif part == "movielens":
            cfg = movielens_config(args.movielens_users, args.epochs)
            tasks = cfg["data"]["params"]["tasks"]
            real["movielens"] = run_real(part, cfg, tasks, args.epochs, seeds, args.data_dir)
        else:
            raise SystemExit(f"unknown --real part {part!r}")
        payload["real"] = real
        payload["real_protocol"] = (
            f"Reduced budget (CPU): shared-bottom [64] (single-task networks [32] as the Delta-m baseline), Adam lr 1e-3, "
            f"batch 512, {args.epochs} epochs (early stopping on mean relative validation loss), census max_rows="
            f"{args.census_rows} (split_seed 0, 50/25/25), MovieLens max_users={args.movielens_users}, max_len 20, "
            f"leave-last-out split; affinity measured in one run of {args.epochs} epochs (seed 0); Delta-m (%, higher is "
            f"better) over every test metric with a direction, against the single-task networks of the same seed, "
            f"seeds {seeds}.")
        write_results("affinity", payload, markdown(payload))  # after every part: a partial result survives
    if not real:
        write_results("affinity", payload, markdown(payload))


if __name__ == "__main__":
    main()
