"""DUPN on MovieLens-100K: multi-task user representation from behaviour sequences, and its
transfer to a task it was not trained on.

Data: ``movielens_100k`` (see ``polytask/data/datasets/movielens.py``): one sample per rating
event, the user's earlier ratings as three aligned sequences (item, rating, log time-gap bucket;
last 50), the candidate item's id and genres and the hour/weekday as context; leave-last-out by
time per user (943 test and 943 validation events, 98,114 training events), or held-out users
(``--split users``, below). No user id among the
inputs, so the profile tasks must be read from the behaviour.

**Multi-task comparison.** Tasks ``like`` (rating >= 4; AUC), ``rating`` (RMSE), ``gender``
(AUC), ``age_group`` (7 classes; accuracy). Models, all on the same input features:

* Single-Task: one network per task (``single_task``, hidden [64]); sequences mean-pooled;
* Shared-Bottom: shared MLP [64] under towers [32] (``shared_bottom``); sequences mean-pooled;
* DUPN: per-step embeddings (concat) -> LSTM (32) -> attention with the context as query ->
  user representation shared by all towers [32] (``dupn`` defaults).

Delta-m (%, higher is better, LibMTL sign) against Single-Task, paired by seed, over those four
metrics.

**Transfer.** ``occupation`` (21 classes, not among the trained tasks): (a) a new tower trained on
the *frozen* DUPN representation of the multi-task run of the same seed
(``init_from=<that run>, freeze="shared"``: embeddings, LSTM and attention loaded and frozen, only
the new tower trains); (b) the same DUPN architecture trained from scratch on occupation only.
Test accuracy and macro-F1, mean ± std over seeds; the majority-class accuracy is given for scale.
The test set has one row per test user (943, or 189 held-out users), so these are per-user numbers.

**Budget** (the same for every run): Adam, lr 1e-3, batch 512, at most ``--epochs`` (default 20)
epochs, early stopping on the validation loss (the unweighted sum of the task losses; patience 2),
best validation epoch restored, test read once. Embedding width 16 everywhere. One torch thread
per worker process.

Run: ``python benchmarks/dupn.py`` (``--help`` for options; ``--seeds 1 --max-users 60 --epochs 1``
for a smoke run).
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

TASKS = {"like": "auc", "rating": "rmse", "gender": "auc", "age_group": "accuracy"}
TRANSFER_TASK = "occupation"
TRANSFER_METRICS = ("accuracy", "macro_f1")
MODELS: dict[str, dict[str, Any]] = {
    "Single-Task": {"name": "single_task", "hidden": [64], "tower_hidden": [], "embedding_dim": 16},
    "Shared-Bottom": {"name": "shared_bottom", "bottom_hidden": [64], "tower_hidden": [32], "embedding_dim": 16},
    "DUPN": {"name": "dupn", "embedding_dim": 16, "hidden_size": 32, "attention_dim": 32, "tower_hidden": [32]},
}
BASELINE = "Single-Task"
FROZEN, SCRATCH = "DUPN frozen + new tower", "DUPN from scratch"


def _train_options(epochs: int, seed: int) -> dict[str, Any]:
    return {"epochs": epochs, "batch_size": 512, "patience": 2, "monitor": "loss", "seed": seed,
            "progress": False, "device": "cpu"}


def _row(label: str, seed: int, run: Any) -> dict[str, Any]:
    """The fields ``polytask.compare.run_grid`` gives a row (so ``summarize`` reads it)."""
    epochs = run.history
    return {
        "model": label,
        "seed": seed,
        "best_epoch": run.metrics.get("best_epoch"),
        "epochs": len(epochs),
        "seconds_per_epoch": sum(r["train_seconds"] for r in epochs) / max(len(epochs), 1),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "trainable": sum(p.numel() for p in run.model.parameters() if p.requires_grad),
        "validation": run.metrics.get("validation", {}),
        "test": run.metrics.get("test", {}),
        "diagnostics": epochs[-1].get("diagnostics", {}) if epochs else {},  # DUPN: attention entropy
    }


def _job(kind: str, label: str, seed: int, args: dict[str, Any]) -> list[dict[str, Any]]:
    import torch

    import polytask

    torch.set_num_threads(args["threads"])
    data = _data_params(args, seed)
    common = {"dataset": "movielens_100k", "data_dir": args["data_dir"], "optimizer": {"name": "adam", "lr": 1e-3},
              **_train_options(args["epochs"], seed)}
    rows = []
    if kind == "mtl":
        run = polytask.fit(dataset_params={**data, "tasks": list(TASKS)}, model=MODELS[label], **common)
        rows.append({**_row(label, seed, run), "part": "mtl"})
        if label == "DUPN":  # the transfer from this run's representation, in the same process
            new = polytask.fit(dataset_params={**data, "tasks": [TRANSFER_TASK]}, model=MODELS["DUPN"],
                               init_from=run, freeze="shared", **common)
            rep = new.metrics["transfer"]
            rows.append({**_row(FROZEN, seed, new), "part": "transfer",
                         "frozen": len(rep["frozen"]), "loaded": len(rep["loaded"])})
    else:  # the same architecture, occupation only, from scratch
        run = polytask.fit(dataset_params={**data, "tasks": [TRANSFER_TASK]}, model=MODELS["DUPN"], **common)
        rows.append({**_row(SCRATCH, seed, run), "part": "transfer"})
    return rows


def _data_params(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """movielens_100k parameters of one seed (held-out users: a new partition per seed)."""
    data: dict[str, Any] = {"max_len": args["max_len"], "split": args["split"]}
    if args["split"] == "users":
        data["split_seed"] = seed
    if args["max_users"] is not None:
        data["max_users"] = args["max_users"]
    return data


def _majority_accuracy(args: dict[str, Any], seeds: int) -> float:
    """Test accuracy of always predicting the most frequent training occupation (mean over the
    seeds' user partitions under ``--split users``)."""
    import numpy as np

    from polytask.data.datasets.movielens import movielens

    scores = []
    for seed in range(seeds if args["split"] == "users" else 1):
        kw = _data_params(args, seed) | {"max_len": 1}
        b = movielens(args["data_dir"], **kw, tasks=[TRANSFER_TASK])
        train = b.train.column(TRANSFER_TASK).to_numpy()
        test = b.test.column(TRANSFER_TASK).to_numpy()
        scores.append(float(np.mean(test == np.bincount(train).argmax())))
    return float(np.mean(scores))


def _cell(stats: dict[str, float], digits: int = 4) -> str:
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2, help="runs trained in parallel worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--max-users", type=int, default=None, help="keep the first N users (quick checks)")
    ap.add_argument("--max-len", type=int, default=50, help="history length kept")
    ap.add_argument("--split", choices=["leave_last_out", "users"], default="leave_last_out",
                    help="leave_last_out: every user in every split; users: test on held-out users "
                         "(20 %% validation, 20 %% test users, a new partition per seed)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--name", default="dupn", help="results/<name>.json and .md")
    args = ap.parse_args()
    start = time.time()
    job_args = {k: getattr(args, k) for k in ("threads", "max_users", "max_len", "data_dir", "epochs", "split")}
    # longest jobs first (DUPN + its transfer, then DUPN from scratch), seeds outermost
    jobs = [(kind, label, seed) for seed in range(args.seeds)
            for kind, label in (("mtl", "DUPN"), ("scratch", SCRATCH), ("mtl", "Shared-Bottom"), ("mtl", BASELINE))]
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_job, kind, label, seed, job_args) for kind, label, seed in jobs]
        for f in futures:
            for r in f.result():
                rows.append(r)
                tasks = TASKS if r["part"] == "mtl" else {TRANSFER_TASK: "accuracy"}
                print(f"{r['model']:24s} seed {r['seed']}: "
                      + ", ".join(f"{t} {m} {r['test'][t][m]:.4f}" for t, m in tasks.items())
                      + f" ({r['seconds_per_epoch']:.1f} s/epoch, {r['epochs']} epochs, best {r['best_epoch']})",
                      flush=True)
    minutes = (time.time() - start) / 60

    from polytask.compare import summarize

    mtl_rows = [r for r in rows if r["part"] == "mtl"]
    transfer_rows = [r for r in rows if r["part"] == "transfer"]
    metrics = {t: [m] for t, m in TASKS.items()}
    summary = summarize(mtl_rows, list(TASKS), metrics, baseline=BASELINE)
    transfer = summarize(transfer_rows, [TRANSFER_TASK], {TRANSFER_TASK: list(TRANSFER_METRICS)}, baseline=SCRATCH)
    majority = _majority_accuracy(job_args, args.seeds)

    split_line = (
        "**Split: held-out users** (`--split users`): per seed, 20 % of the users (shuffled with the seed) are "
        "validation users and 20 % test users, one sample each (their last event, whole history); the other "
        "users' events are the training set. Nothing of a test user is trained on, by the multi-task source "
        "run or by the transfer runs, so the profile tasks and the transfer are measured on new users."
        if args.split == "users" else
        "**Split: leave-last-out** (the dataset default): every user is in every split, so profile tasks are "
        "predicted for users whose earlier events (with their labels) were trained on."
    )
    lines = ["# DUPN on MovieLens-100K", "", __doc__.split("Run:")[0].strip(), "", split_line, "",
             "## Multi-task: test metrics, mean ± std over seeds", "",
             "| model | " + " | ".join(f"{t} {m}" for t, m in TASKS.items())
             + " | Δm % vs Single-Task | params | epochs | s/epoch |",
             "|---|" + "---|" * len(TASKS) + "---|---|---|---|"]
    for label in (BASELINE, "Shared-Bottom", "DUPN"):
        if label not in summary:
            continue
        e = summary[label]
        d = e["delta_m"]
        delta = "—" if label == BASELINE else f"{d['mean']:+.2f} ± {d['std']:.2f}"
        runs = [r for r in mtl_rows if r["model"] == label]
        lines.append(f"| {label} | " + " | ".join(_cell(e[t][m]) for t, m in TASKS.items())
                     + f" | {delta} | {e['parameters']:,} | {statistics.mean(r['epochs'] for r in runs):.1f}"
                     + f" | {e['seconds_per_epoch']['mean']:.1f} |")
    lines += ["", f"## Transfer to `{TRANSFER_TASK}` (21 classes, not trained on by the source run)", "",
              "| model | accuracy | macro-F1 | Δm % vs scratch | trainable params | epochs |",
              "|---|---|---|---|---|---|"]
    for label in (SCRATCH, FROZEN):
        if label not in transfer:
            continue
        e = transfer[label][TRANSFER_TASK]
        d = transfer[label]["delta_m"]
        runs = [r for r in transfer_rows if r["model"] == label]
        delta = "—" if label == SCRATCH else f"{d['mean']:+.2f} ± {d['std']:.2f}"
        lines.append(f"| {label} | {_cell(e['accuracy'])} | {_cell(e['macro_f1'])} | {delta} | "
                     f"{runs[0]['trainable']:,} | {statistics.mean(r['epochs'] for r in runs):.1f} |")
    lines += ["", f"Majority-class accuracy (most frequent training occupation): {majority:.4f}.", "",
              f"Command: `python benchmarks/dupn.py {' '.join(sys.argv[1:])}`".rstrip()
              + f" ({minutes:.0f} min, {args.jobs} worker processes x {args.threads} thread, {args.seeds} seeds"
              + (f", max_users={args.max_users}" if args.max_users else "") + ")"]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    payload = {"environment": environment(), "args": vars(args), "models": MODELS, "tasks": TASKS,
               "budget": _train_options(args.epochs, 0) | {"optimizer": "adam", "lr": 1e-3},
               "summary": summary, "transfer": transfer, "majority_accuracy": majority, "rows": rows,
               "minutes": minutes}
    write_results(args.name, payload, markdown)


if __name__ == "__main__":
    main()
