"""The speed benchmark's MMoE on a GPU, as one short prepared script (CI has no GPU; run it where
one is at hand): samples/s with the data resident on the device at batch 1k, 8k and 64k, and the
share of each training step's wall time spent outside device kernels.

The design goal is that data loading is never the bottleneck: the encoded table lives on the GPU
(:meth:`polytask.data.table.TensorTable.to`), the loader's batches are ``index_select`` there, and
a step is the model's kernels plus Python. The share outside kernels says how much of a step is
launch overhead and host work; at batch 1k a small MMoE is expected to be launch-bound, at 64k
kernel-bound.

Everything runs through :class:`polytask.train.trainer.Trainer` (fp32, Adam, two binary tasks) on
the speed benchmark's census-shaped synthetic table (:mod:`data`): training samples/s from the
trainer's second epoch (the first warms up), inference samples/s from eval-mode forwards over the
same rows, and the profiled share from ``torch.profiler`` over a few training steps: 1 - (time
inside device kernels) / (wall time). On the CPU (``--device cpu``, a smoke test) "kernels" are
the aten operators' own CPU time.

Run: ``python benchmarks/speed/gpu.py`` (``--device cpu --rows 20000`` for the smoke test). Writes
``results/speed_gpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import data as speed_data  # noqa: E402
from common import environment, write_results  # noqa: E402

BATCHES = (1024, 8192, 65536)
MODEL = {"name": "mmoe", "num_experts": 8, "expert_hidden": [16], "tower_hidden": [8], "embedding_dim": 4}


def tensor_table(data: Any, split: str = "train"):
    """The benchmark's rows as polytask's encoded table: ids 1..cardinality (0 is the OOV id)."""
    import torch

    from polytask.data.table import TensorTable

    num, cat, y = (getattr(data, f"{split}_{k}") for k in ("num", "cat", "y"))
    features = {"numeric": torch.from_numpy(num).contiguous(),
                "categorical": torch.from_numpy(cat + 1).to(torch.int32).contiguous()}
    labels = {t: torch.from_numpy(y[:, i]).float().contiguous() for i, t in enumerate(speed_data.TASKS)}
    masks = {t: torch.ones(len(num), dtype=torch.bool) for t in speed_data.TASKS}
    return TensorTable(features, labels, masks)


def build(data: Any):
    from polytask.data.schema import InputSpec
    from polytask.models import create_model
    from polytask.tasks import Task

    spec = InputSpec(numeric_dim=data.train_num.shape[1], cardinalities=[int(c) + 1 for c in data.cardinalities],
                     numeric_names=list(speed_data.NUMERIC_NAMES), categorical_names=list(speed_data.CATEGORICAL_NAMES))
    tasks = [Task(name=t, kind="binary") for t in speed_data.TASKS]
    return create_model(MODEL["name"], spec, tasks, {k: v for k, v in MODEL.items() if k != "name"}), tasks


def outside_kernels(trainer: Any, table: Any, device: str, steps: int = 20) -> float:
    """1 - kernel time / wall time over ``steps`` profiled training steps (one short epoch)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device.startswith("cuda")
    part = table.slice(0, min(table.num_rows, steps * trainer.batch_size))
    from polytask.data.table import TensorTable

    small = TensorTable(part.features, part.labels, part.masks, part.weights)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    trainer.epochs = 1
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        record = trainer.fit(small, None)[-1]
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    if on_gpu:
        inside = sum(e.self_device_time_total for e in events) / 1e6
    else:
        inside = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 1e6
    # the fit's own wall time includes its evaluation-free epoch bookkeeping; use the epoch time
    wall = record.get("train_seconds", wall)
    return max(0.0, 1.0 - inside / wall) if wall > 0 else float("nan")


def measure(data: Any, device: str, batch: int, rows: int) -> dict[str, float]:
    import torch

    from polytask.train.trainer import Trainer

    torch.manual_seed(0)
    model, tasks = build(data)
    table = tensor_table(data)
    if table.num_rows > rows:
        part = table.slice(0, rows)
        from polytask.data.table import TensorTable

        table = TensorTable(part.features, part.labels, part.masks, part.weights)
    table = table.to(device)  # resident on the device: the loader gathers batches there
    trainer = Trainer(model, tasks, epochs=2, batch_size=batch, device=device, progress=False, patience=None,
                      log_every=None, lr=1e-3)
    history = trainer.fit(table, None)
    train = table.num_rows / history[-1]["train_seconds"]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    model.eval()
    features = table.all().features
    with torch.inference_mode():
        for start in range(0, min(table.num_rows, 4 * batch), batch):
            model({k: v[start:start + batch] for k, v in features.items()})
        sync()
        t0 = time.perf_counter()
        for start in range(0, table.num_rows, batch):
            model({k: v[start:start + batch] for k, v in features.items()})
        sync()
        infer = table.num_rows / (time.perf_counter() - t0)
    model.train()
    share = outside_kernels(trainer, table, device)
    return {"batch": batch, "rows": table.num_rows, "train": train, "inference": infer, "outside_kernels": share,
            "final_train_loss": float(sum(history[-1]["train_loss"].values()))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rows", type=int, default=1 << 21, help="training rows (generated)")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--name", default="speed_gpu", help="results/<name>.{json,md}; '' writes nothing")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu for a smoke test")
    data = speed_data.generate(n_train=args.rows, n_test=1)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        r = measure(data, args.device, batch, args.rows)
        rows.append(r)
        print(f"batch {batch}: {r['train']:,.0f} train / {r['inference']:,.0f} inference samples/s, "
              f"{r['outside_kernels']:.0%} of a step outside kernels", flush=True)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    lines = [f"# Speed benchmark MMoE on {name}: data resident on the device", "", __doc__.split("Run:")[0].strip(), "",
             "| batch | rows | training samples/s | inference samples/s | share of a step outside kernels |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']:,} | {r['rows']:,} | {r['train']:,.0f} | {r['inference']:,.0f} | {r['outside_kernels']:.0%} |"
              for r in rows]
    lines += ["", f"Command: `python benchmarks/speed/gpu.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip()]
    text = "\n".join(lines) + "\n"
    print(text)
    payload = {"environment": environment(), "device": name, "model": MODEL, "rows": rows}
    if args.name:
        write_results(args.name, payload, text)
    return payload


if __name__ == "__main__":
    main()
