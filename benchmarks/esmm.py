"""Entire-space CVR estimation: BASE, ESMM-NS, ESMM (Ma et al., SIGIR 2018) and AITM (Xi et al.,
KDD 2021) on the ``entire_space`` simulator, where the true conversion probability of every
impression is known, and as a smoke run on the Ali-CCP and AliExpress samples.

Models (every one with the same towers: MLP 90-50-20, the ESMM paper's 360-200-80 divided by 4,
ReLU, embeddings of width 8, then one output unit):

* **BASE**: the paper's baseline, a CVR network (``single_task``, task ``cvr`` = purchase
  ``where: click == 1``) trained on clicked impressions only. As in the paper, its pCTCVR is its
  pCVR times the pCTR of an independently trained CTR network of the same structure (a second
  ``single_task`` run with task ``ctr``, same seed), and its CTR numbers are that network's.
* **ESMM-NS**: ``esmm`` with ``shared_embeddings: false`` (each tower its own embedding table).
* **ESMM**: ``esmm``: CTR and CVR towers over one embedding table, trained on ``ctr`` and
  ``ctcvr = pCTR x pCVR`` over all impressions; ``cvr`` (clicked space) is predicted, never trained.
* **AITM**: ``aitm`` over the sequence ``ctr -> ctcvr`` (click, then click-and-purchase, both on
  all impressions), calibration weight 0.6. AITM has no CVR output: its pCVR is
  ``min(pCTCVR / pCTR, 1)``, which its calibrator keeps mostly below 1.

Budget, the same for every model: Adam lr 1e-3, batch 1024, at most 20 epochs with early stopping
(patience 2) on the model's own validation loss (the unweighted sum of its trained tasks'
losses; BASE's CVR and CTR networks stop separately), best epoch restored, test split read once.
One seed = one simulated market (``entire_space`` with ``seed`` = the seed: new users, items and
impressions; validation and test a quarter of the training size each) and the training seed; the
real samples keep their split (``split_seed`` 0) and vary the training seed only.

Three simulated regimes (suites), because where ESMM should help depends on where the conversion
signal lives and how much data each part of it gets:

* ``entire_space`` (the simulator's defaults): 2,000 users x 1,000 items, 300,000 impressions (about
  150 per user), click rate 7 %, CVR 10 %, ``shared = 0.5``, ``clickbait = 0.3``. Most of both
  logits is user-item latent affinity that 150 impressions per user barely identify (CTR AUC
  0.69 against the truth's 0.80), so there is little for shared embeddings to pass on.
* ``entire_space_dense``: dense ids, sparse conversions: 1,000 users x 500 items, 1,000,000
  impressions (1,000 per user), click rate 5 %, CVR 5 % (about 2,500 conversions), ``shared = 0.8``
  (the click affinity is most of the conversion logit). The CTR side is learnable from all
  impressions; the conversion-only parts (user purchase bias, item quality, ``a_perp``) get a
  couple of conversions per user.
* ``entire_space_aligned``: as ``dense`` with ``clickbait = -0.8``: attractive items convert
  *better* (item quality and click appeal correlate +0.8), a per-item effect that an item embedding
  learned from impressions carries to the CVR tower.

Default run: 5 seeds x 3 regimes x 4 models, 2 worker processes x 1 torch thread, about 25 minutes
on 2 cores (the dense regimes dominate: about 1-2 minutes a run). The models overfit the sparse
conversions within a few epochs, so early stopping ends most CVR networks well before 20 epochs.

Metrics on the test split (``polytask.analysis.entire_space.entire_space_metrics``, from
``run.predict`` on the test table): CVR AUC over the *entire* impression space (pCVR against
``conversion_if_clicked``, drawn for every impression) and its oracle ceiling (the true
``p_cvr``), CVR calibration over the entire space (``mean pCVR / mean p_cvr``, 1 = calibrated)
and ECE against ``p_cvr``, CVR AUC on clicked rows (observed purchase: what the paper reports),
CTCVR AUC and CTR AUC over all impressions; mean ± std over seeds, and the CVR AUC difference to
BASE paired by seed. The real samples have no ground truth: clicked-space CVR AUC, CTCVR and CTR
AUC only.

Run: ``python benchmarks/esmm.py`` (``--help`` for options; ``--render`` rebuilds the markdown
from the stored JSON without training).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, write_results  # noqa: E402

TOWER = [90, 50, 20]
EMBEDDING = 8
TRAIN = {"epochs": 20, "batch_size": 1024, "patience": 2, "monitor": "loss", "progress": False}
OPTIMIZER = {"name": "adam", "lr": 1e-3}

#: label -> list of (model section, tasks) runs; BASE's second run is the independent CTR network
MODELS: dict[str, list[tuple[dict[str, Any], list[str]]]] = {
    "BASE": [
        ({"name": "single_task", "hidden": TOWER, "tower_hidden": [], "embedding_dim": EMBEDDING}, ["cvr"]),
        ({"name": "single_task", "hidden": TOWER, "tower_hidden": [], "embedding_dim": EMBEDDING}, ["ctr"]),
    ],
    "ESMM-NS": [({"name": "esmm", "tower_hidden": TOWER, "embedding_dim": EMBEDDING, "shared_embeddings": False},
                 ["ctr", "cvr", "ctcvr"])],
    "ESMM": [({"name": "esmm", "tower_hidden": TOWER, "embedding_dim": EMBEDDING}, ["ctr", "cvr", "ctcvr"])],
    "AITM": [({"name": "aitm", "tower_hidden": TOWER, "embedding_dim": EMBEDDING, "calibration_weight": 0.6},
              ["ctr", "ctcvr"])],
}
BASELINE = "BASE"

_DENSE = {"rows": 1_000_000, "num_users": 1_000, "num_items": 500, "click_rate": 0.05, "cvr_rate": 0.05, "shared": 0.8}
SUITES: dict[str, dict[str, Any]] = {
    "entire_space": {"dataset": "entire_space", "params": {"rows": 300_000}, "truth": True, "seeded_data": True},
    "entire_space_dense": {"dataset": "entire_space", "params": _DENSE, "truth": True, "seeded_data": True},
    "entire_space_aligned": {"dataset": "entire_space", "params": _DENSE | {"clickbait": -0.8}, "truth": True,
                             "seeded_data": True},
    "ali_ccp": {"dataset": "ali_ccp", "params": {}, "truth": False, "seeded_data": False},
    "aliexpress": {"dataset": "aliexpress", "params": {}, "truth": False, "seeded_data": False},
}
TRUTH_METRICS = [  # (key, column title)
    ("cvr_auc_entire", "CVR AUC, entire space"),
    ("cvr_calibration", "CVR calibration, entire (mean pCVR / mean p_cvr)"),
    ("cvr_ece", "CVR ECE vs p_cvr"),
    ("cvr_auc_clicked", "CVR AUC, clicked"),
    ("ctcvr_auc", "CTCVR AUC"),
    ("ctr_auc", "CTR AUC"),
]
REAL_METRICS = [("cvr_auc_clicked", "CVR AUC, clicked"), ("ctcvr_auc", "CTCVR AUC"), ("ctr_auc", "CTR AUC")]


def _load(suite: str, seed: int, rows: int | None, data_dir: str | None) -> Any:
    from polytask.registry import DATASETS

    spec = SUITES[suite]
    params = dict(spec["params"])
    if spec["seeded_data"]:
        params["seed"] = seed
    if rows is not None and spec["dataset"] == "entire_space":
        params["rows"] = rows
    return DATASETS.get(spec["dataset"])(data_dir, **params)


def _fit(bundle: Any, model: dict[str, Any], tasks: list[str], seed: int) -> Any:
    import polytask

    by_name = {t["name"]: t for t in bundle.tasks}
    return polytask.fit(train=bundle.train, validation=bundle.validation, test=bundle.test, features=bundle.features,
                        tasks=[by_name[n] for n in tasks], model=model, optimizer=OPTIMIZER, seed=seed, **TRAIN)


def _job(suite: str, label: str, seed: int, threads: int, rows: int | None, data_dir: str | None) -> dict[str, Any]:
    import torch

    from polytask.analysis.entire_space import auc, entire_space_metrics

    torch.set_num_threads(threads)
    start = time.time()
    bundle = _load(suite, seed, rows, data_dir)
    test = bundle.test
    preds: dict[str, np.ndarray] = {}
    runs = []
    for model, tasks in MODELS[label]:
        run = _fit(bundle, model, tasks, seed)
        runs.append(run)
        preds.update(run.predict(test))  # BASE: cvr from the first run, ctr from the second
    pctr = preds["ctr"]
    if "cvr" in preds:
        pcvr = preds["cvr"]
    else:  # AITM: no CVR output; pCVR = pCTCVR / pCTR
        pcvr = np.clip(preds["ctcvr"] / np.maximum(pctr, 1e-12), 0.0, 1.0)
    pctcvr = preds.get("ctcvr", pctr * pcvr)
    if SUITES[suite]["truth"]:
        metrics = entire_space_metrics(test, pcvr, pctr, pctcvr)
    else:
        click = test.column("click").to_numpy().astype(bool)
        conversion = test.column(by_task(bundle, "cvr")).to_numpy()
        metrics = {
            "cvr_auc_clicked": auc(pcvr[click], conversion[click]) if click.any() else math.nan,
            "ctcvr_auc": auc(pctcvr, test.column(by_task(bundle, "ctcvr")).to_numpy()),
            "ctr_auc": auc(pctr, click.astype(np.float64)),
        }
    histories = [r.history for r in runs]
    return {
        "suite": suite,
        "model": label,
        "seed": seed,
        "metrics": metrics,
        "epochs": [len(h) for h in histories],
        "best_epoch": [r.metrics.get("best_epoch") for r in runs],
        "seconds_per_epoch": sum(sum(e["train_seconds"] for e in h) for h in histories) / max(sum(len(h) for h in histories), 1),
        "seconds": time.time() - start,
        "parameters": sum(sum(p.numel() for p in r.model.parameters()) for r in runs),
        "test_rows": test.num_rows,
        "notes": bundle.notes,
    }


def by_task(bundle: Any, name: str) -> str:
    """The label column of task ``name`` in a dataset bundle."""
    (task,) = [t for t in bundle.tasks if t["name"] == name]
    return task.get("label") or name


def _stats(values: list[float]) -> dict[str, float]:
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def _cell(s: dict[str, float], digits: int = 4) -> str:
    if s["n"] == 0:
        return "n/a"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}" + ("" if s["n"] > 1 else " (1 run)")


def summarize(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    base = {r["seed"]: r["metrics"] for r in rows if r["model"] == BASELINE}
    for label in MODELS:
        runs = [r for r in rows if r["model"] == label]
        if not runs:
            continue
        entry: dict[str, Any] = {k: _stats([r["metrics"].get(k, math.nan) for r in runs]) for k in keys}
        deltas = [r["metrics"][keys[0]] - base[r["seed"]][keys[0]] for r in runs if r["seed"] in base]
        entry["delta_cvr_auc_vs_base"] = _stats(deltas)
        entry["wins_vs_base"] = sum(d > 0 for d in deltas)
        entry["epochs"] = _stats([sum(r["epochs"]) / len(r["epochs"]) for r in runs])
        entry["seconds_per_epoch"] = _stats([r["seconds_per_epoch"] for r in runs])
        entry["parameters"] = runs[0]["parameters"]
        out[label] = entry
    if "cvr_auc_entire_oracle" in rows[0]["metrics"]:
        out["oracle (true p_cvr)"] = {"cvr_auc_entire": _stats([r["metrics"]["cvr_auc_entire_oracle"] for r in rows
                                                                if r["model"] == BASELINE])}
    return out


def markdown(summary: dict[str, dict[str, Any]], metrics: list[tuple[str, str]]) -> list[str]:
    head = [title for _, title in metrics] + [f"Δ {metrics[0][1]} vs BASE (paired)", "epochs", "s/epoch", "params"]
    lines = ["| model | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for label, e in summary.items():
        if label not in MODELS:  # the oracle row
            cells = [_cell(e[k]) if k in e else "" for k, _ in metrics] + ["", "", "", ""]
        else:
            d = e["delta_cvr_auc_vs_base"]
            delta = ("—" if label == BASELINE or d["n"] == 0
                     else f"{d['mean']:+.4f} ± {d['std']:.4f} ({e['wins_vs_base']}/{d['n']} seeds above)")
            cells = [_cell(e[k]) for k, _ in metrics] + [
                delta, f"{e['epochs']['mean']:.1f}", f"{e['seconds_per_epoch']['mean']:.2f}", f"{e['parameters']:,}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def render(payload: dict[str, Any]) -> str:
    """The results markdown of a payload (what ``main`` writes; ``--render`` rebuilds it from the JSON)."""
    args = payload["args"]
    lines = ["# Entire-space CVR: BASE, ESMM-NS, ESMM, AITM", "", __doc__.split("Run:")[0].strip(), ""]
    for suite in args["suites"]:
        if suite not in payload["suites"]:
            lines += [f"## {suite}", "", f"Skipped: {payload['skipped'].get(suite, 'no runs')}", ""]
            continue
        truth = SUITES[suite]["truth"]
        metrics = TRUTH_METRICS if truth else REAL_METRICS
        suite_rows, summary = payload["suites"][suite]["rows"], payload["suites"][suite]["summary"]
        lines += [f"## {suite}", ""]
        if not truth:
            lines += [f"**Smoke run only: the {suite} sample has {suite_rows[0]['test_rows']} test rows; these numbers "
                      "are not meaningful (a handful of clicks and conversions; n/a where a split has one class). "
                      "They show that the models run end to end on the real data format.**", ""]
        lines += markdown(summary, metrics)
        lines += ["", f"Data: {suite_rows[0]['notes']}", ""]
    lines += [
        "Context (not comparable: other data, full Ali-CCP): the ESMM paper's Table 2 reports CVR AUC (clicked) "
        "66.00 BASE / 68.25 ESMM-NS / 68.56 ESMM and CTCVR AUC 62.07 / 64.44 / 65.32 (%, 10 runs); "
        "see shared/reference/paper-results.md §3.",
        "",
        f"Command: `{('python benchmarks/esmm.py ' + payload.get('command', '')).strip()}`"
        + f" ({payload.get('minutes', math.nan):.1f} min, {args['jobs']} worker processes x {args['threads']} thread, "
        f"{args['seeds']} seeds)",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                    help="rows to run (BASE is needed for the paired differences)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=None,
                    help="training rows of every simulated suite (default: the suite's own, 300,000 or "
                         "1,000,000; validation and test get a quarter each)")
    ap.add_argument("--jobs", type=int, default=2, help="runs trained in parallel worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--name", default="esmm")
    ap.add_argument("--render", action="store_true",
                    help="train nothing: rebuild results/<name>.md from results/<name>.json")
    args = ap.parse_args()
    if args.render:  # the summaries are recomputed from the stored rows, the JSON's rows are kept
        payload = json.loads((RESULTS / f"{args.name}.json").read_text())
        for suite, part in payload["suites"].items():
            metrics = TRUTH_METRICS if SUITES[suite]["truth"] else REAL_METRICS
            part["summary"] = summarize(part["rows"], [k for k, _ in metrics])
        text = render(payload)
        print(text)
        write_results(args.name, payload, text)
        return
    start = time.time()
    jobs = [(s, m, seed) for seed in range(args.seeds) for s in args.suites for m in args.models]
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [(s, m, seed, pool.submit(_job, s, m, seed, args.threads, args.rows, args.data_dir)) for s, m, seed in jobs]
        for s, m, seed, f in futures:
            try:
                r = f.result()
            except FileNotFoundError as err:  # a dataset's files are missing: report, don't abort the others
                skipped[s] = str(err)
                print(f"{s:12s} {m:8s} seed {seed}: skipped ({err})", flush=True)
                continue
            rows.append(r)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items() if k in dict(TRUTH_METRICS))
            print(f"{s:12s} {m:8s} seed {seed}: {shown} ({r['seconds']:.0f} s, epochs {r['epochs']})", flush=True)

    payload: dict[str, Any] = {
        "environment": environment(), "args": vars(args), "budget": {"train": TRAIN, "optimizer": OPTIMIZER},
        "models": {k: [{"model": m, "tasks": t} for m, t in v] for k, v in MODELS.items() if k in args.models},
        "suites": {}, "skipped": skipped, "command": " ".join(sys.argv[1:]), "minutes": (time.time() - start) / 60,
    }
    for suite in args.suites:
        suite_rows = [r for r in rows if r["suite"] == suite]
        if suite_rows:
            metrics = TRUTH_METRICS if SUITES[suite]["truth"] else REAL_METRICS
            summary = summarize(suite_rows, [k for k, _ in metrics])
            payload["suites"][suite] = {"config": SUITES[suite], "summary": summary, "rows": suite_rows}
    text = render(payload)
    print(text)
    write_results(args.name, payload, text)


if __name__ == "__main__":
    main()
