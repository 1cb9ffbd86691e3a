"""Every loss-weighting and gradient method on two problems, against single-task baselines.

* ``multimnist``: MultiMNIST built from the raw MNIST files (see
  ``polytask/data/datasets/multi_mnist.py`` for the construction), two 10-class tasks (left and
  right digit), a LeNet-style CNN shared by both tasks with one hidden layer per task
  (``shared_bottom`` with ``encoder: cnn``); the baseline is one such network per task.
* ``census``: UCI census-income task group 1 (income, never married) with MMoE (8 experts of 16
  units, towers of 8), as in the census benchmark; the baseline is the single-task model.

Each method trains with its defaults (its first supported mode) under the same budget: Adam at a
fixed learning rate, early stopping on the validation loss (the unweighted sum of the task losses,
so methods that scale the training loss are not favoured), the test split read once at the end.
Reported per method: test accuracy/AUC per task (mean ± std over seeds), Delta-m against the
single-task baseline (paired by seed), and training seconds per epoch relative to equal weighting
(all runs of a suite share the machine in the same way; read it as the method's cost, not a
precise timing). ``fixed`` is left out: with its default weights it is equal weighting.

Run: ``python benchmarks/weighting.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

SUITES: dict[str, dict[str, Any]] = {
    "multimnist": {
        "base": {
            "data": {"dataset": "multi_mnist", "params": {"max_rows": 10000}},
            "model": {"name": "shared_bottom", "encoder": "cnn", "bottom_hidden": [], "tower_hidden": [50]},
            "optimizer": {"name": "adam", "lr": 1e-3},
            "train": {"epochs": 15, "batch_size": 256, "patience": 3, "monitor": "loss", "progress": False},
        },
        "baseline": {"model": {"name": "single_task", "encoder": "cnn", "hidden": [], "tower_hidden": [50]}},
        "tasks": {"left": "accuracy", "right": "accuracy"},
    },
    "census": {
        "base": {
            "data": {"dataset": "census_income", "params": {"group": 1, "split_seed": 0}},
            "model": {"name": "mmoe", "num_experts": 8, "expert_hidden": [16], "tower_hidden": [8]},
            "optimizer": {"name": "adam", "lr": 1e-3},
            "train": {"epochs": 30, "batch_size": 1024, "patience": 4, "monitor": "loss", "progress": False},
        },
        "baseline": {"model": {"name": "single_task", "hidden": [64], "tower_hidden": [8]}},
        "tasks": {"income": "auc", "never_married": "auc"},
    },
}
BASELINE = "Single-Task"


def _job(suite: str, method: str, seed: int, threads: int, data_dir: str | None, max_rows: int | None) -> dict[str, Any]:
    import torch

    from polytask.compare import merge, run_grid

    torch.set_num_threads(threads)
    spec = SUITES[suite]
    base = spec["base"]
    if max_rows is not None:
        base = merge(base, {"data": {"params": {"max_rows": max_rows}}})
    if method == BASELINE:  # the baseline's model section replaces the multi-task model's
        base, override = {**base, "model": spec["baseline"]["model"]}, {}
    else:
        override = {"weighting": {"name": method}}
    (row,) = run_grid(base, {method: override}, [seed], data_dir=data_dir)
    row["suite"] = suite
    return row


def main() -> None:
    from polytask.registry import WEIGHTINGS

    methods_all = [m for m in WEIGHTINGS.names() if m != "fixed"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    ap.add_argument("--methods", nargs="+", default=methods_all, choices=methods_all)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="runs trained in parallel worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--max-rows", type=int, default=None, help="cap the training rows (quick checks)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--name", default="weighting")
    args = ap.parse_args()
    if "equal" not in args.methods:
        args.methods = ["equal", *args.methods]
    start = time.time()
    # seeds outermost, so every method's runs are spread over the whole run (the machine's load changes)
    jobs = [(s, m, seed) for seed in range(args.seeds) for s in args.suites for m in [BASELINE, *args.methods]]
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_job, s, m, seed, args.threads, args.data_dir, args.max_rows) for s, m, seed in jobs]
        for f in futures:
            r = f.result()
            rows.append(r)
            metrics = SUITES[r["suite"]]["tasks"]
            print(f"{r['suite']:10s} {r['model']:12s} seed {r['seed']}: "
                  + ", ".join(f"{t} {r['test'][t][m]:.4f}" for t, m in metrics.items())
                  + f" ({r['seconds_per_epoch']:.2f} s/epoch, {r['epochs']} epochs)", flush=True)

    from polytask.compare import summarize

    payload: dict[str, Any] = {"environment": environment(), "args": vars(args), "suites": {}}
    lines = ["# Loss weighting and gradient methods", "", __doc__.split("Run:")[0].strip(), ""]
    for suite in args.suites:
        spec = SUITES[suite]
        tasks = spec["tasks"]
        suite_rows = [r for r in rows if r["suite"] == suite]
        summary = summarize(suite_rows, list(tasks), {t: [m] for t, m in tasks.items()}, baseline=BASELINE)
        equal_speed = summary["equal"]["seconds_per_epoch"]["mean"]
        payload["suites"][suite] = {"config": spec, "summary": summary, "rows": suite_rows}
        head = " | ".join(f"{t} {m}" for t, m in tasks.items())
        lines += [f"## {suite}", "", f"| method | {head} | Δm % | epochs | s/epoch vs equal |",
                  "|---|" + "---|" * len(tasks) + "---|---|---|"]
        order = sorted(summary, key=lambda k: (k != BASELINE, -(summary[k]["delta_m"]["mean"] if k != BASELINE else 0)))
        for label in order:
            e = summary[label]
            cells = " | ".join(f"{e[t][m]['mean']:.4f} ± {e[t][m]['std']:.4f}" for t, m in tasks.items())
            d = e["delta_m"]
            delta = "—" if label == BASELINE else f"{d['mean']:+.2f} ± {d['std']:.2f}"
            epochs = statistics.mean(r["epochs"] for r in suite_rows if r["model"] == label)
            ratio = e["seconds_per_epoch"]["mean"] / equal_speed
            lines.append(f"| {label} | {cells} | {delta} | {epochs:.1f} | {ratio:.2f}x |")
        lines.append("")
    lines.append(f"Command: `python benchmarks/weighting.py {' '.join(sys.argv[1:])}`".rstrip()
                 + f" ({(time.time() - start) / 60:.0f} min, {args.jobs} worker processes x {args.threads} thread, "
                 f"{args.seeds} seeds)")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results(args.name, payload, markdown)


if __name__ == "__main__":
    main()
