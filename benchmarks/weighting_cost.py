"""Cost of a training step of every weighting method relative to equal weighting, measured in one
process on an otherwise idle machine (the training benchmark runs two workers side by side, so its
seconds per epoch mix in the other worker's load).

For each suite (the models and batch sizes of ``benchmarks/weighting.py``) every method trains two
epochs on a small slice; the second epoch's training time (the loop only: no data loading or
evaluation) is the measurement. Methods are visited in rounds, each round in a new order, and the
median over rounds is divided by equal weighting's. Run: ``python benchmarks/weighting_cost.py``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402
from weighting import SUITES  # noqa: E402

SLICES = {"multimnist": 2000, "census": 16000}  # training rows: 8 and 8 steps of the suites' batch sizes


def main() -> None:
    import torch

    from polytask.compare import merge
    from polytask.registry import WEIGHTINGS

    methods_all = [m for m in WEIGHTINGS.names() if m != "fixed"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    ap.add_argument("--methods", nargs="+", default=methods_all, choices=methods_all)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    if "equal" not in args.methods:
        args.methods = ["equal", *args.methods]
    torch.set_num_threads(args.threads)
    import polytask

    start = time.time()
    payload: dict[str, Any] = {"environment": environment(), "args": vars(args), "suites": {}}
    lines = ["# Step cost of the weighting methods relative to equal weighting", "", __doc__.split("Run:")[0].strip(), ""]
    rng = random.Random(0)
    for suite in args.suites:
        base = SUITES[suite]["base"]
        max_rows = SLICES[suite] if suite == "multimnist" else SLICES[suite] * 2  # census: train is half the rows
        cfg = merge(base, {"data": {"params": {"max_rows": max_rows}},
                           "train": {"epochs": 2, "patience": None, "log_every": None}})
        times: dict[str, list[float]] = {m: [] for m in args.methods}
        for _ in range(args.rounds):
            order = list(args.methods)
            rng.shuffle(order)
            for m in order:
                run = polytask.fit(merge(cfg, {"weighting": {"name": m}}), data_dir=args.data_dir)
                times[m].append(run.history[-1]["train_seconds"] / max(run.history[-1]["train_samples"], 1))
        equal = statistics.median(times["equal"])
        ratios = {m: statistics.median(v) / equal for m, v in times.items()}
        payload["suites"][suite] = {"seconds_per_sample": times, "ratio_to_equal": ratios}
        lines += [f"## {suite}", "", "| method | step cost vs equal |", "|---|---|"]
        lines += [f"| {m} | {r:.2f}x |" for m, r in sorted(ratios.items(), key=lambda kv: kv[1])]
        lines.append("")
    lines.append(f"Command: `python benchmarks/weighting_cost.py {' '.join(sys.argv[1:])}`".rstrip()
                 + f" ({(time.time() - start) / 60:.0f} min, {args.threads} thread, median of {args.rounds} rounds)")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results("weighting_cost", payload, markdown)


if __name__ == "__main__":
    main()
