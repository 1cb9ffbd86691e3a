"""Larger than memory: training streamed from Parquet row groups against the in-memory path.

    python benchmarks/streaming.py --rows 20000000 --memory-rows 5000000 --data /tmp/streambench-data

1. Generates (once; kept under ``--data``) a CTR-like Parquet set: ``--rows`` rows in files of
   ``--file-rows`` rows, row groups of 262,144 rows, 40 columns: 13 numeric (log-normal counts
   with missing values, Criteo-style), 25 categorical integer ids (cardinalities 4 to 10,000,
   log-uniform, Zipf-like frequencies) and two binary labels (click; buy, labelled on clicked rows only) from a
   fixed logistic teacher. Generation streams too: one row group at a time.
2. Trains the same model one epoch in a fresh subprocess per run (MMoE, 8 experts x [16],
   towers [8], embedding dim 4, Adam 1e-3, batch 1024, one torch thread; no validation/test):
   * ``memory``: the first ``--memory-rows`` rows' files read whole (``data.stream: false``,
     the path every run took before streaming), encoded once, batches as index slices;
   * ``stream``: the same files streamed (``data.stream``, shuffle buffer ``--shuffle-buffer``);
   * ``stream`` over all ``--rows`` rows (peak memory at full size; in memory only if
     ``--memory-rows`` equals ``--rows``).
   Each run reports the training loop's samples/s (the trainer's own ``train_samples /
   train_seconds`` of the epoch: for streaming this includes reading, decoding, encoding and
   shuffling, which happen inside the loop), the time before training (reading + fitting the
   encoders, and for ``memory`` encoding the whole table) and the subprocess's peak RSS
   (``ru_maxrss``).
3. Writes ``benchmarks/results/streaming.{json,md}``.

Only one heavy run at a time: the runs are sequential, in alternating pairs (in memory, streamed)
whose median ratio is reported, and the machine's load before each run is recorded. One torch
thread by default: on a 2-core machine shared with other work, two OpenMP threads stall at every
parallel region whenever another process takes a core (the same in-memory run measured 28k and
422k samples/s minutes apart); with one thread the swings are those of the machine's load only.
The streamed runs' decoding thread then has the second core, as a data-loading worker would.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

N_NUMERIC, N_CATEGORICAL = 13, 25
NUMERIC = [f"num_{i:02d}" for i in range(N_NUMERIC)]
CATEGORICAL = [f"cat_{i:02d}" for i in range(N_CATEGORICAL)]
ROW_GROUP = 262_144
SEED = 20261130
MODEL = {"name": "mmoe", "num_experts": 8, "expert_hidden": [16], "tower_hidden": [8], "embedding_dim": 4}
BATCH = 1024
RESULTS = Path(__file__).resolve().parent / "results"


def cardinalities() -> list[int]:
    """Per categorical column: 4 .. 10,000 values, log-spaced (a few large id columns, many small)."""
    return [int(c) for c in np.geomspace(4, 10_000, N_CATEGORICAL).round()]


def generate(directory: Path, rows: int, file_rows: int) -> None:
    """Write the data set one row group at a time (never more than one in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    rng_teacher = np.random.default_rng(SEED)
    w_num = rng_teacher.normal(0, 0.4, (N_NUMERIC, 2))
    cards = cardinalities()
    w_cat = [rng_teacher.normal(0, 0.6, (min(c, 1000), 2)) for c in cards]  # the first 1000 ids carry signal
    done, index = 0, 0
    while done < rows:
        n_file = min(file_rows, rows - done)
        path = directory / f"part-{index:05d}.parquet"
        writer = None
        for start in range(0, n_file, ROW_GROUP):
            n = min(ROW_GROUP, n_file - start)
            rng = np.random.default_rng([SEED, index, start])
            counts = np.floor(rng.lognormal(1.0, 1.5, (n, N_NUMERIC))).astype(np.float32)
            counts[rng.random((n, N_NUMERIC)) < 0.08] = np.nan
            # log-uniform ids (frequency ~ 1 / id, Zipf-like): id 0 the most frequent
            cats = [(np.exp(rng.random(n) * np.log(c)) - 1).astype(np.int64) for c in cards]
            logit = np.nan_to_num(np.log1p(counts)) @ w_num - np.array([1.2, 0.0])
            for ids, w in zip(cats, w_cat):
                logit += w[np.minimum(ids, len(w) - 1)]
            click = rng.random(n) < 1 / (1 + np.exp(-logit[:, 0]))
            buy = np.where(click, (rng.random(n) < 1 / (1 + np.exp(-logit[:, 1]))).astype(np.float32), np.nan)
            columns = {name: pa.array(counts[:, i], from_pandas=True) for i, name in enumerate(NUMERIC)}
            columns.update({name: ids for name, ids in zip(CATEGORICAL, cats)})
            columns.update(click=click.astype(np.int8), buy=pa.array(buy, from_pandas=True))
            table = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
        writer.close()
        done += n_file
        index += 1


def config(train: str, stream: bool, shuffle_buffer: int, threads: int = 1) -> dict:
    return {
        "data": {
            "train": train,
            "stream": {"shuffle_buffer": shuffle_buffer} if stream else False,
            "split": {"validation": 0.0, "test": 0.0},
            "features": {"numeric": [{"name": c, "log1p": True} for c in NUMERIC], "categorical": CATEGORICAL},
            "tasks": [{"name": "click"}, {"name": "buy"}],
        },
        "model": MODEL,
        "optimizer": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 1, "batch_size": BATCH, "threads": threads, "patience": None, "progress": False,
                  "seed": 0},
    }


def worker(args: argparse.Namespace) -> None:
    """One run in this (fresh) process; prints one JSON line."""
    import polytask

    cfg = config(args.train, args.mode == "stream", args.shuffle_buffer, args.threads)
    start = time.perf_counter()
    run = polytask.fit(cfg)
    wall = time.perf_counter() - start
    epoch = run.history[0]
    print(json.dumps({
        "mode": args.mode, "train": args.train, "rows": epoch["train_samples"],
        "train_seconds": epoch["train_seconds"], "samples_per_s": epoch["train_samples"] / epoch["train_seconds"],
        "before_training_seconds": wall - epoch["train_seconds"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "train_loss": epoch["train_loss"],
    }))


def machine_state() -> dict:
    import torch

    load = os.getloadavg()
    mem = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            if key in ("MemTotal", "MemAvailable"):
                mem[key] = f"{int(value.split()[0]) / 1024 ** 2:.1f} GB"
    except OSError:
        pass
    return {"load_average_1_5_15": [round(x, 2) for x in load], "cpu_count": os.cpu_count(), **mem,
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                         cwd=Path(__file__).parent).stdout.strip()}


def measure(mode: str, train: str, shuffle_buffer: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--train", train, "--shuffle-buffer", str(shuffle_buffer),
           "--threads", str(threads)]
    print("$", " ".join(cmd), flush=True)
    load_before = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_average_before"] = round(load_before, 2)
    print(json.dumps(result), flush=True)
    return result


def subset(directory: Path, rows: int, file_rows: int) -> str:
    """A directory of links to the files that hold the first ``rows`` rows (whole files), or the
    whole set's directory when that is all of it."""
    files = sorted(directory.glob("part-*.parquet"))
    n_files = -(-rows // file_rows)
    if n_files >= len(files):
        return str(directory)
    part = directory.parent / f"{directory.name}-first-{n_files}-files"
    part.mkdir(exist_ok=True)
    for f in files[:n_files]:
        if not (part / f.name).exists():
            (part / f.name).symlink_to(f)
    return str(part)


def write_results(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "streaming.json").write_text(json.dumps(results, indent=1) + "\n")
    runs = results["runs"]
    lines = [
        "# Larger than memory: streamed Parquet training against the in-memory path", "",
        f"Generated {results['generated']} by `{results['command']}`.", "",
        f"Data: {results['data']}", "",
        f"Model: {results['model']}", "",
        "| run | rows | train samples/s | before training (s) | peak RSS (MB) | load avg before |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(f"| {r['label']} | {r['rows']:,} | {r['samples_per_s'] / 1e3:.1f}k | "
                     f"{r['before_training_seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['load_average_before']} |")
    lines += ["", "| ratio | measured | target | met |", "|---|---:|---:|---|"]
    for name, (value, target, met) in results["ratios"].items():
        lines.append(f"| {name} | {value} | {target} | {'yes' if met else 'NO'} |")
    lines += ["", "Samples/s is the trainer's own `train_samples / train_seconds` of the epoch; for the streamed "
              "runs reading, decoding, encoding and shuffling happen inside that loop (a background thread decodes "
              "ahead of the step). 'Before training' is reading the data, fitting the encoders (a streaming pass for "
              "the streamed runs) and, in memory, encoding the whole table. Peak RSS is `ru_maxrss` of the run's own "
              "fresh process.", "", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in results["machine"].items()]
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    (RESULTS / "streaming.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--memory-rows", type=int, default=5_000_000,
                        help="rows of the in-memory comparison (whole files); --rows for the full size")
    parser.add_argument("--file-rows", type=int, default=1_000_000)
    parser.add_argument("--shuffle-buffer", type=int, default=500_000)
    parser.add_argument("--data", default="/tmp/streambench-data")
    parser.add_argument("--repeats", type=int, default=3, help="alternating in-memory / streamed pairs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the training step (1: see the module docstring)")
    parser.add_argument("--note", action="append", default=[], help="a line for the results' notes")
    parser.add_argument("--worker", choices=["memory", "stream"], help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.mode = args.worker
        return worker(args)
    directory = Path(args.data) / f"rows-{args.rows}"
    if not (directory / "_DONE").exists():
        t = time.perf_counter()
        generate(directory, args.rows, args.file_rows)
        (directory / "_DONE").write_text(f"{time.perf_counter() - t:.1f} s\n")
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.0f} s", flush=True)
    first = subset(directory, args.memory_rows, args.file_rows)
    runs = []
    for i in range(args.repeats):  # alternating, so that the machine's drift hits both alike
        for label, mode in (("in memory", "memory"), ("streamed", "stream")):
            r = measure(mode, first, args.shuffle_buffer, args.threads)
            r["label"] = f"{label} #{i + 1}"
            runs.append(r)
    pairs = [runs[i + 1]["samples_per_s"] / runs[i]["samples_per_s"] for i in range(0, len(runs), 2)]
    ratio = float(np.median(pairs))
    full = runs[1]
    if args.memory_rows < args.rows:
        full = measure("stream", str(directory), args.shuffle_buffer, args.threads)
        full["label"] = "streamed, full size"
        runs.append(full)
    ratios = {
        f"streamed / in memory samples/s ({runs[0]['rows']:,} rows; median of {len(pairs)} alternating pairs: "
        f"{', '.join(f'{p:.2f}' for p in pairs)})": (f"{ratio:.2f}x", ">= 0.8x", ratio >= 0.8),
        f"peak RSS streamed ({full['rows']:,} rows)": (f"{full['peak_rss_mb']:.0f} MB", "< 2048 MB",
                                                         full["peak_rss_mb"] < 2048),
    }
    command = "python benchmarks/streaming.py " + " ".join(sys.argv[1:])
    write_results({
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command.strip(),
        "data": (f"{args.rows:,} rows x 40 columns (13 numeric log-normal counts with 8% missing, log1p + standard "
                 f"scaling; 25 categorical integer ids, cardinalities {cardinalities()[0]}-{cardinalities()[-1]:,}, "
                 f"log-uniform (frequency ~ 1/id); click, and buy on clicked rows), {args.file_rows:,} rows per file, row groups of "
                 f"{ROW_GROUP:,}; generated under {directory}"),
        "model": (f"MMoE {MODEL['num_experts']} experts x {MODEL['expert_hidden']}, towers {MODEL['tower_hidden']}, "
                  f"embedding dim {MODEL['embedding_dim']}; Adam 1e-3, batch {BATCH}, {args.threads} torch thread(s), one "
                  f"epoch; shuffle buffer {args.shuffle_buffer:,} rows"),
        "runs": runs, "ratios": ratios, "machine": machine_state(), "notes": args.note,
    })
    print(f"ratio {ratio:.2f}x; results in {RESULTS}/streaming.md")


if __name__ == "__main__":
    main()
