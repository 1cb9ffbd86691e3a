"""Text multi-task learning: the Joint Many-Task model on UD English EWT, CoNLL-2000 and SICK, and
sluice / cross-stitch / hard sharing / single-task on chunking with POS as the auxiliary task.

**Data** (``shared/data``; see the dataset modules for the exact splits):

* ``ud_english_ewt`` (UD 2.16): official train/dev/test; UPOS tags and dependency heads and
  relations (gold tokenisation; UAS and LAS over every word, punctuation included, relation
  subtypes kept);
* ``conll2000_chunking``: official train (WSJ 15-18) and test (WSJ 20); the validation split is
  10 % of train carved with a fixed seed (the shipped ``dev.txt`` has an undocumented origin);
  chunk F1 by seqeval (CoNLL chunk F1, IOB2 tags);
* ``sick2014``: SICK_train / SICK_trial (validation) / SICK_test_annotated; relatedness (Pearson,
  Spearman, MSE of the expected score) and 3-way entailment accuracy.

**Part 1: JMT** (``model: jmt``, ``train.schedule: jmt``): one run over the three data sets
(``data.sources``), five tasks bottom up: POS (EWT UPOS) -> chunking (CoNLL-2000) -> dependencies
(EWT) -> relatedness -> entailment (SICK); every task learns from its own source's rows only.
Compared with each task trained alone with the same word representation and one BiLSTM level
(``jmt`` with that one task: the paper's "Single"), and the paper's ablations (no shortcut
connections, no label embeddings, no successive regularisation).

**Part 2: chunking with POS as the auxiliary task** on CoNLL-2000 (its PTB POS column): sluice
(``columns: lstm``, two subspaces), cross-stitch (``columns: lstm``), hard sharing and single-task
(``encoder: tokens``); every model has word embeddings and two BiLSTM layers (per task, or shared
by hard sharing); Delta-m on chunk F1 against single-task, paired by seed.

Every run: model selection on the validation split only (``train.monitor``, patience), the best
epoch's weights restored, the test split read once at the end. One torch thread per worker.

Run: ``python benchmarks/nlp.py`` (``--help``; ``--quick`` for a smoke run of a few minutes).
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

SOURCES = {"ewt": "ud_english_ewt", "chunk": "conll2000_chunking", "sick": "sick2014"}
JMT_TASKS: list[dict[str, Any]] = [
    {"name": "pos", "kind": "tagging", "label": "upos", "tokens": "words", "source": "ewt"},
    {"name": "chunk", "kind": "tagging", "label": "chunk", "tokens": "words", "scheme": "bio", "source": "chunk"},
    {"name": "dep", "kind": "dependency", "label": "heads", "relations": "deprels", "tokens": "words", "source": "ewt"},
    {"name": "relatedness", "kind": "relatedness", "label": "relatedness", "low": 1, "high": 5, "source": "sick"},
    {"name": "entailment", "kind": "multiclass", "label": "entailment", "source": "sick"},
]
JMT_METRICS = {"pos": ["token_accuracy"], "chunk": ["span_f1"], "dep": ["uas", "las"],
               "relatedness": ["pearson", "spearman", "mse"], "entailment": ["accuracy"]}
#: JMT, EMNLP 2017, Table 1 (test): Single -> JMT_all (chunking: JMT_AB, the all-task number is not
#: comparable, see shared/reference/paper-results-text-vision.md)
PAPER = {
    "pos": {"token_accuracy": (97.45, 97.55)}, "chunk": {"span_f1": (95.02, 95.77)},
    "dep": {"uas": (93.35, 94.67), "las": (91.42, 92.90)}, "relatedness": {"mse": (0.247, 0.233)},
    "entailment": {"accuracy": (81.8, 86.2)},
}
ABLATIONS = {
    "JMT w/o shortcuts": {"shortcuts": False},
    "JMT w/o label embeddings": {"label_embeddings": False},
    "JMT w/o successive reg.": {"successive": 0.0, "successive_classifier": 0.0},
}
CHUNK_TASKS = [
    {"name": "chunk", "kind": "tagging", "label": "chunk", "tokens": "words", "scheme": "bio"},
    {"name": "pos", "kind": "tagging", "label": "pos", "tokens": "words"},
]
CHUNK_METRICS = {"chunk": ["span_f1"], "pos": ["token_accuracy"]}


def chunk_models(hidden: int, dim: int) -> dict[str, dict[str, Any]]:
    """Every model: word embeddings (``dim``, no n-grams: the ``lstm`` columns have none) and two
    BiLSTM layers of ``hidden`` units per direction, then per-task output layers."""
    tokens = {"encoder": "tokens", "encoder_params": {"dim": dim, "hidden": hidden, "layers": 2}}
    lstm = {"columns": "lstm", "column_params": {"word_dim": dim}, "hidden": [2 * hidden, 2 * hidden],
            "tower_hidden": []}
    return {
        "Single-task": {"name": "single_task", "hidden": [hidden], "tower_hidden": [], **tokens},
        "Hard sharing": {"name": "shared_bottom", "bottom_hidden": [hidden], "tower_hidden": [], **tokens},
        "Cross-stitch": {"name": "cross_stitch", **lstm},
        "Sluice": {"name": "sluice", "subspaces": 2, **lstm},
    }


def _train(args: dict[str, Any], seed: int, schedule: str = "joint") -> dict[str, Any]:
    return {"epochs": args["epochs"], "batch_size": args["batch_size"], "patience": args["patience"], "seed": seed,
            "progress": False, "device": "cpu", "schedule": schedule, "grad_clip": 5.0,
            "eval_batch_size": 256}


def _source(name: str, args: dict[str, Any]) -> dict[str, Any]:
    params = {"max_rows": args["max_rows"]} if args["max_rows"] else {}
    return {"dataset": SOURCES[name], "params": params}


def jmt_config(tasks: list[dict[str, Any]], args: dict[str, Any], seed: int, **model: Any) -> dict[str, Any]:
    sources = sorted({t["source"] for t in tasks}, key=list(SOURCES).index)
    params = {"text": "words", "dim": args["dim"], "hidden": args["hidden"], "label_dim": args["label_dim"], **model}
    if "sick" in sources:
        params["pair"] = "words_b"
    return {
        "data": {"sources": {s: _source(s, args) for s in sources}, "tasks": copy.deepcopy(tasks)},
        "model": {"name": "jmt", **params},
        "optimizer": {"name": "adam", "lr": args["lr"]},
        "train": _train(args, seed, "jmt"),
    }


def chunk_config(model: dict[str, Any], args: dict[str, Any], seed: int) -> dict[str, Any]:
    return {
        "data": {"dataset": "conll2000_chunking", "params": _source("chunk", args)["params"], "tasks": CHUNK_TASKS},
        "model": model,
        "optimizer": {"name": "adam", "lr": args["lr"]},
        "train": {**_train(args, seed), "monitor": "chunk.span_f1"},
    }


def _row(part: str, label: str, seed: int, run: Any) -> dict[str, Any]:
    history = run.history
    seconds = [r["train_seconds"] for r in history]
    samples = history[0]["train_samples"] if history else 0
    return {
        "part": part, "model": label, "seed": seed,
        "best_epoch": run.metrics.get("best_epoch"), "epochs": len(history),
        "seconds_per_epoch": statistics.fmean(seconds) if seconds else float("nan"),
        "sentences_per_second": samples / statistics.fmean(seconds) if seconds else float("nan"),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "validation": run.metrics.get("validation", {}), "test": run.metrics.get("test", {}),
    }


def _job(part: str, label: str, seed: int, config: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    import torch

    import polytask

    torch.set_num_threads(args["threads"])
    torch.manual_seed(seed)
    run = polytask.fit(config, data_dir=args["data_dir"])
    return _row(part, label, seed, run)


def jobs(args: dict[str, Any]) -> list[tuple[str, str, int, dict[str, Any]]]:
    """Every run, the long ones (five-task JMT) first so two workers finish together."""
    out = [("jmt", "JMT (all tasks)", seed, jmt_config(JMT_TASKS, args, seed)) for seed in range(args["seeds"])]
    for seed in range(args["ablation_seeds"]):
        for label, change in ABLATIONS.items():
            out.append(("jmt-ablation", label, seed, jmt_config(JMT_TASKS, args, seed, **change)))
    for seed in range(args["seeds"]):
        for task in JMT_TASKS:
            out.append(("jmt-single", f"Single: {task['name']}", seed, jmt_config([task], args, seed)))
    for seed in range(args["seeds"]):
        for label, model in chunk_models(args["hidden"], args["dim"]).items():
            out.append(("chunk", label, seed, chunk_config(model, args, seed)))
    return out


def _single_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One 'Single' row per seed, each task's metrics from its own single-task run."""
    merged: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r["part"] != "jmt-single":
            continue
        task = r["model"].split(": ", 1)[1]
        m = merged.setdefault(r["seed"], {"part": "jmt", "model": "Single (each task alone)", "seed": r["seed"],
                                          "test": {}, "validation": {}, "parameters": 0, "seconds_per_epoch": 0.0})
        m["test"][task] = r["test"][task]
        m["validation"][task] = r["validation"].get(task, {})
        m["parameters"] += r["parameters"]
        m["seconds_per_epoch"] += r["seconds_per_epoch"]
    return [m for m in merged.values() if set(m["test"]) == set(JMT_METRICS)]


def _cell(stats: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    if not stats.get("n"):
        return "—"
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def _scale(metric: str) -> tuple[float, int]:
    return (1.0, 3) if metric in ("pearson", "spearman", "mse") else (100.0, 2)


def markdown(rows: list[dict[str, Any]], args: dict[str, Any], minutes: float) -> tuple[str, dict[str, Any]]:
    from polytask.compare import summarize

    lines = ["# Text MTL: JMT on EWT + CoNLL-2000 + SICK; sluice / cross-stitch on chunking", "",
             __doc__.split("Run:")[0].strip(), "",
             f"**Budget** (this machine: 2 CPU cores, {args['jobs']} runs in parallel, 1 thread each): "
             f"at most {args['epochs']} epochs, patience {args['patience']}, Adam lr {args['lr']}, batch "
             f"{args['batch_size']}, gradient norm clipped at 5; word embeddings {args['dim']}-d + character "
             f"2/3/4-gram embeddings, BiLSTM {args['hidden']} units per direction, label embeddings "
             f"{args['label_dim']}-d; no pretrained vectors"
             + (f"; training sets capped at {args['max_rows']} rows per source" if args["max_rows"] else "")
             + ". The paper trains far longer (SGD with decay, 100-d pretrained word and n-gram vectors, "
             "WSJ for POS and dependencies), so its numbers are a reference point, not a target.", ""]
    summary: dict[str, Any] = {}
    jmt_rows = [r for r in rows if r["part"] in ("jmt", "jmt-ablation")] + _single_rows(rows)
    if jmt_rows:
        tasks = list(JMT_METRICS)
        summary["jmt"] = summarize(jmt_rows, tasks, JMT_METRICS, baseline="Single (each task alone)")
        header = [f"{t} {m}" for t in tasks for m in JMT_METRICS[t]]
        lines += ["## JMT: test metrics, mean ± std over seeds (accuracies and F1 in %)", "",
                  "| model | seeds | " + " | ".join(header) + " | Δm % vs Single | s/epoch |",
                  "|---|---|" + "---|" * len(header) + "---|---|"]
        order = ["Single (each task alone)", "JMT (all tasks)", *ABLATIONS]
        for label in order:
            if label not in summary["jmt"]:
                continue
            e = summary["jmt"][label]
            n = e[tasks[0]][JMT_METRICS[tasks[0]][0]]["n"]
            cells = [_cell(e[t][m], *_scale(m)) for t in tasks for m in JMT_METRICS[t]]
            d = e["delta_m"]
            delta = "—" if label.startswith("Single") or not d["n"] else f"{d['mean']:+.2f} ± {d['std']:.2f}"
            lines.append(f"| {label} | {n} | " + " | ".join(cells) + f" | {delta} | {e['seconds_per_epoch']['mean']:.0f} |")
        paper = [PAPER.get(t, {}).get(m) for t in tasks for m in JMT_METRICS[t]]
        lines.append("| paper: Single -> JMT_all | | " + " | ".join(
            "" if p is None else f"{p[0]} -> {p[1]}" for p in paper) + " | | |")
        lines += ["", "Paper: Hashimoto et al., EMNLP 2017, Table 1 (POS, dependencies on WSJ; chunking's JMT number "
                  "is JMT_AB, the POS+chunking model, since JMT_all's chunking test set overlaps its dependency "
                  "training data); relatedness MSE only. Here POS and dependencies are UD English EWT (UPOS, UD "
                  "relations), so they are not the same task as the paper's PTB POS and Stanford dependencies.", ""]
    chunk_rows = [r for r in rows if r["part"] == "chunk"]
    if chunk_rows:
        summary["chunk"] = summarize(chunk_rows, list(CHUNK_METRICS), {"chunk": ["span_f1"], "pos": ["token_accuracy"]},
                                     baseline="Single-task")
        delta_chunk = summarize(chunk_rows, ["chunk"], {"chunk": ["span_f1"]}, baseline="Single-task")
        lines += ["## Chunking (main) with POS (auxiliary) on CoNLL-2000: test, mean ± std over seeds", "",
                  "| model | seeds | chunk F1 % | POS accuracy % | Δm % on chunk F1 vs single-task | params | s/epoch | sentences/s |",
                  "|---|---|---|---|---|---|---|---|"]
        for label in chunk_models(args["hidden"], args["dim"]):
            if label not in summary["chunk"]:
                continue
            e = summary["chunk"][label]
            d = delta_chunk[label]["delta_m"]
            delta = "—" if label == "Single-task" else f"{d['mean']:+.2f} ± {d['std']:.2f}"
            runs = [r for r in chunk_rows if r["model"] == label]
            sps = statistics.fmean(r["sentences_per_second"] for r in runs)
            lines.append(f"| {label} | {len(runs)} | {_cell(e['chunk']['span_f1'], 100)} | "
                         f"{_cell(e['pos']['token_accuracy'], 100)} | {delta} | {e['parameters']:,} | "
                         f"{e['seconds_per_epoch']['mean']:.0f} | {sps:.0f} |")
        lines.append("")
    speed = {}
    for r in rows:
        speed.setdefault(r["model"], []).append(r)
    lines += ["## Speed on this machine (1 thread per run, two runs side by side)", "",
              "| run | epochs (mean) | s/epoch | training sentences/s |", "|---|---|---|---|"]
    for label, runs in speed.items():
        lines.append(f"| {label} | {statistics.fmean(r['epochs'] for r in runs):.1f} | "
                     f"{statistics.fmean(r['seconds_per_epoch'] for r in runs):.0f} | "
                     f"{statistics.fmean(r['sentences_per_second'] for r in runs):.0f} |")
    lines += ["", "JMT's sentences/s counts every source's training rows (a SICK pair is one row) over the epoch's "
              "five task passes.", "",
              f"Command: `python benchmarks/nlp.py {' '.join(sys.argv[1:])}`".rstrip() + f" ({minutes:.0f} min"
              + (", including the merged earlier runs" if args.get("merge") else "") + ")"]
    return "\n".join(lines) + "\n", summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ablation-seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--dim", type=int, default=64, help="word (and n-gram) embedding width")
    ap.add_argument("--hidden", type=int, default=64, help="BiLSTM units per direction")
    ap.add_argument("--label-dim", type=int, default=32)
    ap.add_argument("--max-rows", type=int, default=None, help="cap each source's training rows")
    ap.add_argument("--parts", default="jmt,chunk", help="jmt, chunk or both")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 300 rows per source")
    ap.add_argument("--name", default="nlp")
    ap.add_argument("--merge", default=None,
                    help="an earlier results JSON: its runs are kept and not trained again (e.g. more ablation seeds)")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.ablation_seeds, args.epochs, args.max_rows = 1, 0, 1, args.max_rows or 300
    opts = vars(args)
    parts = set(args.parts.split(","))
    rows: list[dict[str, Any]] = []
    previous_minutes = 0.0
    if args.merge:
        import json

        earlier = json.loads(Path(args.merge).read_text())
        rows = earlier["rows"]
        previous_minutes = earlier.get("minutes", 0.0)
    done = {(r["part"], r["model"], r["seed"]) for r in rows}
    todo = [j for j in jobs(opts) if j[0].split("-")[0] in parts and j[:3] not in done]
    start = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [(j, pool.submit(_job, *j, opts)) for j in todo]
        for (part, label, seed, _), f in futures:
            r = f.result()
            rows.append(r)
            shown = {t: {m: v for m, v in r["test"].get(t, {}).items() if m not in ("count", "loss")}
                     for t in r["test"] if isinstance(r["test"][t], dict)}
            print(f"[{(time.time() - start) / 60:5.1f} min] {label} seed {seed}: {shown} "
                  f"({r['epochs']} epochs, best {r['best_epoch']}, {r['seconds_per_epoch']:.0f} s/epoch)", flush=True)
    minutes = (time.time() - start) / 60 + previous_minutes
    text, summary = markdown(rows, opts, minutes)
    print(text)
    write_results(args.name, {"environment": environment(), "args": opts, "tasks": JMT_TASKS, "paper": PAPER,
                              "summary": summary, "rows": rows, "minutes": minutes}, text)


if __name__ == "__main__":
    main()
