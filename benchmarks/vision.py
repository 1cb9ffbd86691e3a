"""Image multi-task learning: every architecture on MultiMNIST at the single-task CNNs' parameter
budget, the best ones on MultiFashion and Multi-(Fashion+MNIST), gradient weightings on the best
architecture, uncertainty weighting against fixed weights on UTKFace, and images/s.

**Data** (``shared/data``; the dataset modules document each construction and split):

* ``multi_mnist``, ``multi_fashion``, ``multi_fashion_mnist``: two 28x28 items on a 36x36 canvas
  (top-left / bottom-right, shifted up to 4 px; Lin et al. 2019's recipe, which builds on Sener &
  Koltun 2018 and Sabour et al. 2017), resized to 28x28; 50,000 train / 10,000 validation (held out
  of MNIST's training images) / 10,000 test (from the test images); tasks ``left`` and ``right``
  (10-way accuracy).
* ``utkface``: UTKFace crop_part1 (9,780 faces, non-commercial licence: benchmark use only);
  tasks ``age`` (regression, MAE in years), ``gender`` (binary accuracy), ``race`` (5-way accuracy).

**Part 1, MultiMNIST, every architecture** under equal weighting. The baseline is two separate
LeNet-style CNNs (one per task: the MGDA paper's MultiLeNet layout, conv 1->10 k5, pool, conv
10->20 k5, pool, linear 320->50, tower 50, head 10). Every multi-task model is sized to the same
total parameter budget (within a few per cent): its width multiplier is chosen from a grid so its
parameter count is nearest the two CNNs' total (the column models, cross-stitch, sluice and soft
sharing, are two CNNs plus their connections already). Every run trains for the same epoch budget
with Adam and a cosine-decayed learning rate, the best validation epoch kept. The budget is one at
which the single-task CNNs have converged: the convergence check trains them twice as long (one
seed) and the table says what that changes. FAFS starts thin (one LeNet shared by both tasks) and
is widened by its task grouping into at most one LeNet per task; each widening rebuilds the
optimiser for the new structure (fresh Adam moments), whose learning rate continues the run's
cosine schedule. Delta-m against the single-task CNNs, paired by seed.

**Part 2, MultiFashion and Multi-(Fashion+MNIST)**: single-task, shared bottom and the three other
architectures with the best Delta-m in part 1 (or ``--best``).

**Part 3, weightings** on the best architecture of part 1 (or ``--best-weighting-model``):
uncertainty (Kendall et al. 2018), PCGrad, MGDA-UB, Nash-MTL and FAMO against equal weights.

**Part 4, UTKFace**: a small CNN with batch norm on 48x48 faces with equal weights, uncertainty weighting and
the best fixed weights of a coarse grid chosen on validation (one seed), each over the seeds.

**Part 5, images/s** of the main CNN models on this machine: the trainer's epoch (uint8 images held
in memory, normalised in the model) and inference forwards, batch 256 (faces 64), two threads,
generated images of the benchmark's shape, the second of two epochs timed.

Every run: model selection on the validation split only (``train.monitor``, patience), the best
epoch's weights restored, the test split read once at the end. One torch thread per worker.

Run: ``python benchmarks/vision.py`` (``--help``; ``--quick`` for a smoke run of a few minutes).
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

DIGITS = ["left", "right"]
DIGIT_METRICS = {"left": ["accuracy"], "right": ["accuracy"]}
FACE_METRICS = {"age": ["mae"], "gender": ["accuracy"], "race": ["accuracy"]}
SINGLE = "Single-task CNNs"
LENET = {"channels": [10, 20], "kernel_size": 5, "pool": 2, "dim": 50}
#: published numbers (shared/reference/paper-results-text-vision.md, Sec. 4): test accuracy % of
#: single-task LeNets (Pareto MTL, Fig. 4, read off the plot) and Sener & Koltun Table 1
PAPER = {
    "multi_mnist": {"Pareto MTL (Lin et al. 2019), single-task LeNet, 120k 36x36 images": (91.0, 88.5),
                    "Sener & Koltun 2018, single-task (60k, resized 28x28)": (97.23, 95.90),
                    "Sener & Koltun 2018, uniform scaling": (96.46, 94.99),
                    "Sener & Koltun 2018, MGDA-UB": (97.26, 95.90)},
    "multi_fashion": {"Pareto MTL (Lin et al. 2019), single-task LeNet, 120k 36x36 images": (81.0, 80.0)},
    "multi_fashion_mnist": {"Pareto MTL (Lin et al. 2019), single-task LeNet, 120k 36x36 images": (94.0, 84.0)},
}


def _w(x: float, w: float) -> int:
    return max(1, round(x * w))


def _lenet(w: float = 1.0) -> dict[str, Any]:
    return {**LENET, "channels": [_w(10, w), _w(20, w)], "dim": _w(50, w)}


#: label -> (registered model, parameters at width multiplier w); every one over LeNet-style convs
ARCHITECTURES: dict[str, Callable[[float], dict[str, Any]]] = {
    "Shared bottom": lambda w: {"name": "shared_bottom", "encoder": "cnn", "encoder_params": _lenet(w),
                                "bottom_hidden": [], "tower_hidden": [50]},
    "MMoE (4 experts)": lambda w: {"name": "mmoe", "encoder": "cnn", "encoder_params": _lenet(),
                                   "num_experts": 4, "expert_hidden": [_w(50, w)], "tower_hidden": [50]},
    "CGC": lambda w: {"name": "cgc", "encoder": "cnn", "encoder_params": _lenet(), "specific_experts": 1,
                      "shared_experts": 1, "expert_hidden": [_w(50, w)], "tower_hidden": [50]},
    "PLE (2 levels)": lambda w: {"name": "ple", "encoder": "cnn", "encoder_params": _lenet(), "num_levels": 2,
                                 "specific_experts": 1, "shared_experts": 1, "expert_hidden": [_w(50, w)],
                                 "tower_hidden": [50]},
    "Cross-stitch (per channel)": lambda w: {"name": "cross_stitch", "columns": "cnn",
                                             "hidden": [_w(10, w), _w(20, w)], "column_params": {"dim": _w(50, w)},
                                             "per_channel": True, "tower_hidden": [50]},
    "Sluice": lambda w: {"name": "sluice", "columns": "cnn", "hidden": [_w(16, w), _w(16, w)],
                         "column_params": {"dim": _w(50, w)}, "subspaces": 2, "tower_hidden": [50]},
    "Soft sharing": lambda w: {"name": "soft_sharing", "columns": "cnn", "hidden": [_w(10, w), _w(20, w)],
                               "column_params": {"dim": _w(50, w)}, "tower_hidden": [50]},
    "DMTRL (Tucker)": lambda w: {"name": "tensor_factorization", "encoder": "cnn", "encoder_params": _lenet(w),
                                 "hidden": [50], "tower_hidden": []},
    "DRN": lambda w: {"name": "drn", "encoder": "cnn", "encoder_params": _lenet(w), "shared_hidden": [],
                      "task_hidden": [50], "tower_hidden": []},
    "FAFS (widened CNN)": lambda w: {"name": "fafs", "conv": [_w(10, w), _w(20, w)], "kernel_size": 5,
                                       "padding": "valid", "pool": 2, "hidden": [_w(50, w), _w(50, w)],
                                       "tower_hidden": [], "warmup_epochs": 2, "widen_every": 2},
}
SINGLE_MODEL = {"name": "single_task", "encoder": "cnn", "encoder_params": _lenet(), "hidden": [], "tower_hidden": [50]}
WEIGHTINGS = ["uncertainty", "pcgrad", "mgda", "nash_mtl", "famo"]
FASHION = {"multi_fashion": "MultiFashion", "multi_fashion_mnist": "Multi-(Fashion+MNIST)"}


# -- parameter budgets ----------------------------------------------------------------------------
def count_parameters(model: dict[str, Any], image: tuple[int, int, int] = (1, 28, 28)) -> int:
    """Parameters of ``model`` (a config's model section) on two 10-way image tasks."""
    from polytask.data.schema import InputSpec
    from polytask.models import create_model
    from polytask.tasks import Task

    spec = InputSpec(dense={"image": list(image)})
    tasks = [Task(name=t, kind="multiclass", num_classes=10) for t in DIGITS]
    params = {k: v for k, v in model.items() if k != "name"}
    return sum(p.numel() for p in create_model(model["name"], spec, tasks, params).parameters())


def matched(builder: Callable[[float], dict[str, Any]], target: int) -> tuple[dict[str, Any], float, int]:
    """The width multiplier (grid 0.5..3, step 0.05) whose model has the parameter count nearest
    ``target``; returns (model section, multiplier, parameters)."""
    best = None
    for i in range(10, 61):
        w = i / 20
        try:
            n = count_parameters(builder(w))
        except ValueError:  # a width the architecture refuses
            continue
        if best is None or abs(n - target) < abs(best[2] - target):
            best = (builder(w), w, n)
    if best is None:
        raise ValueError("no width of this architecture builds")
    return best


# -- configs ---------------------------------------------------------------------------------------
def _train(args: dict[str, Any], seed: int, monitor: str = "mean.accuracy") -> dict[str, Any]:
    return {"epochs": args["epochs"], "batch_size": args["batch_size"], "patience": args["patience"], "seed": seed,
            "monitor": monitor, "progress": False, "device": "cpu", "eval_batch_size": 1024}


def has_shared_representation(model: dict[str, Any]) -> bool:
    """Whether the model passes one shared representation through ``share()`` (MGDA-UB needs it;
    on a model without one, MGDA runs on the shared parameters: ``mode: parameter``)."""
    from polytask.data.schema import InputSpec
    from polytask.models import create_model
    from polytask.tasks import Task

    tasks = [Task(name=t, kind="multiclass", num_classes=10) for t in DIGITS]
    net = create_model(model["name"], InputSpec(dense={"image": [1, 28, 28]}), tasks,
                       {k: v for k, v in model.items() if k != "name"})
    flag = net.has_shared_representation
    return bool(net.shared_modules()) if flag is None else flag


def digits_config(dataset: str, model: dict[str, Any], args: dict[str, Any], seed: int,
                  weighting: str = "equal") -> dict[str, Any]:
    params: dict[str, Any] = {"max_rows": args["max_rows"]} if args["max_rows"] else {}
    if dataset in FASHION:  # Lin et al. keep 36x36; resized like MultiMNIST so the same networks apply
        params["image_size"] = 28
    section: dict[str, Any] = {"name": weighting}
    if weighting == "mgda" and not has_shared_representation(model):
        section["mode"] = "parameter"
    return {"data": {"dataset": dataset, "params": params}, "model": copy.deepcopy(model),
            "weighting": section, "optimizer": {"name": "adam", "lr": args["lr"]},
            "scheduler": {"name": "cosine"}, "train": _train(args, seed)}


def face_model() -> dict[str, Any]:
    """A small CNN shared by the three face tasks: three blocks of 3x3 convolution (16, 32, 64
    channels, zero padding), batch norm, 2x2 max-pool and ReLU, then a 128-unit layer, and one
    64-unit tower per task. (A small ResNet of the same widths, ``encoder: resnet``, costs about 3.5x
    more per image on this CPU at 48x48: more than this machine's budget for 16 runs.)"""
    return {"name": "shared_bottom", "encoder": "cnn",
            "encoder_params": {"channels": [16, 32, 64], "kernel_size": 3, "padding": "same", "batch_norm": True,
                               "dim": 128},
            "bottom_hidden": [], "tower_hidden": [64]}


def face_resnet() -> dict[str, Any]:
    """:func:`face_model` with a small ResNet (He et al. 2016's CIFAR layout: 3x3 stem, one basic block
    in each of three stages of 16, 32 and 64 channels) as the shared encoder (images/s only)."""
    return {**face_model(), "encoder": "resnet",
            "encoder_params": {"stem": "small", "blocks": [1, 1, 1], "widths": [16, 32, 64]}}


def face_config(weighting: dict[str, Any], args: dict[str, Any], seed: int) -> dict[str, Any]:
    params = {"image_size": args["face_size"], **({"max_rows": args["max_rows"]} if args["max_rows"] else {})}
    return {"data": {"dataset": "utkface", "params": params}, "model": face_model(),
            "weighting": copy.deepcopy(weighting), "optimizer": {"name": "adam", "lr": args["lr"]},
            "scheduler": {"name": "cosine"},
            "train": {**_train(args, seed, "mean.relative_loss"), "epochs": args["face_epochs"], "batch_size": 64}}


# -- one run ---------------------------------------------------------------------------------------
def _row(part: str, dataset: str, label: str, weighting: str, seed: int, run: Any) -> dict[str, Any]:
    history = run.history
    seconds = [r["train_seconds"] for r in history]
    samples = history[0]["train_samples"] if history else 0
    return {
        "part": part, "dataset": dataset, "model": label, "weighting": weighting, "seed": seed,
        "best_epoch": run.metrics.get("best_epoch"), "epochs": len(history),
        "best_monitor": next((list(r["monitor"].values())[0] for r in history
                              if r.get("epoch") == run.metrics.get("best_epoch") and "monitor" in r), None),
        "seconds_per_epoch": statistics.fmean(seconds) if seconds else float("nan"),
        "images_per_second": samples / statistics.fmean(seconds) if seconds else float("nan"),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "structure": run.model.structure(),
        "validation": run.metrics.get("validation", {}), "test": run.metrics.get("test", {}),
    }


def _job(part: str, dataset: str, label: str, weighting: str, seed: int, config: dict[str, Any],
         args: dict[str, Any]) -> dict[str, Any]:
    import torch

    import polytask

    torch.set_num_threads(args["threads"])
    torch.manual_seed(seed)
    run = polytask.fit(config, data_dir=args["data_dir"])
    return _row(part, dataset, label, weighting, seed, run)


Job = tuple[str, str, str, str, int, dict[str, Any]]


#: architectures whose size is not matched: FAFS starts as one thin LeNet and is widened into at most
#: one LeNet per task (the baseline's budget) by its task grouping
FIXED_WIDTH = {"FAFS (widened CNN)": 1.0}


def budget_models(target: int, only: list[str] | None = None) -> dict[str, tuple[dict[str, Any], float, int]]:
    out = {}
    for label, builder in ARCHITECTURES.items():
        if only is not None and label not in only:
            continue
        if label in FIXED_WIDTH:
            w = FIXED_WIDTH[label]
            out[label] = (builder(w), w, count_parameters(builder(w)))
        else:
            out[label] = matched(builder, target)
    return out


def best_architectures(rows: list[dict[str, Any]], k: int, exclude: tuple[str, ...] = ()) -> list[str]:
    """The ``k`` architectures of part 1 (other than ``exclude``) with the highest mean Delta-m
    (test) against single-task."""
    from polytask.compare import summarize

    mm = [r for r in rows if r["part"] == "multimnist"]
    summary = summarize(mm, DIGITS, DIGIT_METRICS, baseline=SINGLE)
    ranked = sorted((label for label in summary
                     if label != SINGLE and label not in exclude and summary[label]["delta_m"]["n"]),
                    key=lambda label: -summary[label]["delta_m"]["mean"])
    return ranked[:k]


def jobs(args: dict[str, Any], rows: list[dict[str, Any]]) -> list[Job]:
    parts = set(args["parts"].split(","))
    target = count_parameters(SINGLE_MODEL)
    only = args["architectures"].split(",") if args["architectures"] else None
    unknown = set(only or ()) - set(ARCHITECTURES)
    if unknown:
        raise SystemExit(f"--architectures: unknown {sorted(unknown)}; known: {list(ARCHITECTURES)}")
    # matching a width builds every architecture ~50 times: only for the parts on digit images
    models = budget_models(target, only) if parts & {"multimnist", "fashion", "weightings"} else {}
    out: list[Job] = []
    seeds = range(args["seeds"])
    if "multimnist" in parts:
        for seed in seeds:
            out.append(("multimnist", "multi_mnist", SINGLE, "equal", seed,
                        digits_config("multi_mnist", SINGLE_MODEL, args, seed)))
            for label, (model, _, _) in models.items():
                out.append(("multimnist", "multi_mnist", label, "equal", seed,
                            digits_config("multi_mnist", model, args, seed)))
        # convergence check: the baseline with twice the epoch budget (one seed)
        longer = {**args, "epochs": 2 * args["epochs"]}
        out.insert(0, ("convergence", "multi_mnist", f"{SINGLE}, {2 * args['epochs']} epochs", "equal", 0,
                       digits_config("multi_mnist", SINGLE_MODEL, longer, 0)))
    if "fashion" in parts:
        best = args["best"].split(",") if args["best"] else best_architectures(rows, 3, exclude=("Shared bottom",))
        for dataset in FASHION:
            for seed in seeds:
                out.append(("fashion", dataset, SINGLE, "equal", seed, digits_config(dataset, SINGLE_MODEL, args, seed)))
                for label in dict.fromkeys(["Shared bottom", *best]):
                    out.append(("fashion", dataset, label, "equal", seed, digits_config(dataset, models[label][0], args, seed)))
    if "weightings" in parts:
        label = args["best_weighting_model"] or best_architectures(rows, 1)[0]
        for seed in seeds:
            for weighting in WEIGHTINGS:
                out.append(("weightings", "multi_mnist", label, weighting, seed,
                            digits_config("multi_mnist", models[label][0], args, seed, weighting)))
    if "utkface" in parts:
        grid = face_grid(args, rows)
        out += grid
        if not grid:  # the grid's choice is known: the three weightings over every seed
            fixed = best_fixed(rows)
            for seed in seeds:
                for name, weighting in (("equal", {"name": "equal"}), ("uncertainty", {"name": "uncertainty"}),
                                        (f"best fixed {fixed}", {"name": "fixed", "weights": dict(zip(FACE_METRICS, fixed))})):
                    out.append(("utkface", "utkface", "Small CNN", name, seed, face_config(weighting, args, seed)))
            # seed 0 of the best fixed weights is the grid's own run (same config): reuse it
            best = next(r for r in rows if r["part"] == "utkface-grid" and r["weighting"] == f"fixed {fixed}")
            reused = dict(best, part="utkface", weighting=f"best fixed {fixed}")
            if not any(r["part"] == "utkface" and r["weighting"] == reused["weighting"] and r["seed"] == 0 for r in rows):
                rows.append(reused)
    return out


#: coarse grid of fixed loss weights (age, gender, race); age's loss is the scaled MSE
FACE_GRID = [(a, g, r) for a in (0.25, 1.0, 4.0) for g in (0.25, 1.0, 4.0) for r in (1.0,)]


def face_grid(args: dict[str, Any], rows: list[dict[str, Any]]) -> list[Job]:
    """The grid runs (seed 0) not yet in ``rows``."""
    done = {r["weighting"] for r in rows if r["part"] == "utkface-grid"}
    return [("utkface-grid", "utkface", "Small CNN", f"fixed {w}", 0,
             face_config({"name": "fixed", "weights": dict(zip(FACE_METRICS, w))}, args, 0))
            for w in FACE_GRID if f"fixed {w}" not in done]


def best_fixed(rows: list[dict[str, Any]]) -> tuple[float, ...]:
    """The grid point with the lowest validation mean relative loss (what the runs monitored)."""
    grid = [r for r in rows if r["part"] == "utkface-grid"]
    best = min(grid, key=lambda r: r["best_monitor"])
    return tuple(float(x) for x in best["weighting"][len("fixed ("):-1].split(", "))


# -- speed -----------------------------------------------------------------------------------------
def table(rows: int, image: tuple[int, int, int], seed: int = 0) -> Any:
    """Generated uint8 images of shape ``image`` with two 10-way labels, as a TensorTable."""
    import torch

    from polytask.data.table import TensorTable

    g = torch.Generator().manual_seed(seed)
    return TensorTable({"dense:image": torch.randint(0, 256, (rows, *image), generator=g, dtype=torch.uint8)},
                       {t: torch.randint(0, 10, (rows,), generator=g) for t in DIGITS},
                       {t: torch.ones(rows, dtype=torch.bool) for t in DIGITS})


def images_per_second(model: dict[str, Any], image: tuple[int, int, int], *, device: str, amp: str,
                      rows: int, batch: int) -> dict[str, float]:
    """Training images/s of :class:`~polytask.train.trainer.Trainer` epochs (the second of two timed;
    generated uint8 images resident on ``device``, normalised in the model) and inference images/s
    of eval-mode forwards, under ``amp`` (``none``, ``bf16``, ``fp16``)."""
    import torch

    from polytask.data.schema import InputSpec
    from polytask.models import create_model
    from polytask.tasks import Task
    from polytask.train.trainer import Trainer

    torch.manual_seed(0)
    spec = InputSpec(dense={"image": list(image)},
                     images={"image": {"mean": [0.5] * image[0], "std": [0.25] * image[0], "flip": False, "crop": 0}})
    tasks = [Task(name=t, kind="multiclass", num_classes=10) for t in DIGITS]
    net = create_model(model["name"], spec, tasks, {k: v for k, v in model.items() if k != "name"})
    data = table(rows, image).to(device)  # resident on the device: the loader slices it there
    trainer = Trainer(net, tasks, epochs=2, batch_size=batch, device=device, amp=amp, progress=False,
                      patience=None, log_every=None)
    history = trainer.fit(data, None)
    train = rows / history[-1]["train_seconds"]  # the second epoch: the first one warms up
    net.eval()
    features = data.all().features
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=dtype or torch.float32,
                                                enabled=dtype is not None):
        for start in range(0, min(rows, 4 * batch), batch):  # warm-up
            net({k: v[start:start + batch] for k, v in features.items()})
        sync()
        t0 = time.perf_counter()
        for start in range(0, rows, batch):
            net({k: v[start:start + batch] for k, v in features.items()})
        sync()
        infer = rows / (time.perf_counter() - t0)
    return {"train": train, "inference": infer, "parameters": sum(p.numel() for p in net.parameters()),
            "final_train_loss": float(sum(history[-1]["train_loss"].values()))}


def speed_rows() -> list[dict[str, Any]]:
    target = count_parameters(SINGLE_MODEL)
    models = {SINGLE: SINGLE_MODEL}
    for label in ("Shared bottom", "MMoE (4 experts)", "Cross-stitch (per channel)", "Sluice"):
        models[label] = matched(ARCHITECTURES[label], target)[0]
    import torch

    torch.set_num_threads(2)
    out = [{"model": label, "image": "1x28x28",
            **images_per_second(m, (1, 28, 28), device="cpu", amp="none", rows=10240, batch=256)}
           for label, m in models.items()]
    for label, model in (("Small CNN (faces)", face_model()), ("Small ResNet (faces)", face_resnet())):
        out.append({"model": label, "image": "3x48x48",
                    **images_per_second(model, (3, 48, 48), device="cpu", amp="none", rows=2048, batch=64)})
    return out


# -- tables ----------------------------------------------------------------------------------------
def _cell(stats: dict[str, float], scale: float = 100.0, digits: int = 2) -> str:
    if not stats.get("n"):
        return "—"
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def _digits_table(rows: list[dict[str, Any]], order: list[str], title: str) -> tuple[list[str], dict[str, Any]]:
    from polytask.compare import summarize

    summary = summarize(rows, DIGITS, DIGIT_METRICS, baseline=SINGLE)
    lines = [title, "", "| model | seeds | left acc. % | right acc. % | Δm % vs single-task | params | "
             "best epoch (mean) | s/epoch | train images/s |", "|---|---|---|---|---|---|---|---|---|"]
    for label in [o for o in order if o in summary]:
        e = summary[label]
        runs = [r for r in rows if r["model"] == label]
        d = e["delta_m"]
        delta = "—" if label == SINGLE or not d["n"] else f"{d['mean']:+.2f} ± {d['std']:.2f}"
        params = statistics.fmean(r["parameters"] for r in runs)
        lines.append(f"| {label} | {len(runs)} | {_cell(e['left']['accuracy'])} | {_cell(e['right']['accuracy'])} | "
                     f"{delta} | {params:,.0f} | {statistics.fmean(r['best_epoch'] or 0 for r in runs):.1f} | "
                     f"{e['seconds_per_epoch']['mean']:.1f} | "
                     f"{statistics.fmean(r['images_per_second'] for r in runs):,.0f} |")
    return lines + [""], summary


def markdown(rows: list[dict[str, Any]], speed: list[dict[str, Any]], args: dict[str, Any],
             minutes: float) -> tuple[str, dict[str, Any]]:
    lines = ["# Vision MTL: MultiMNIST, MultiFashion, Multi-(Fashion+MNIST), UTKFace", "",
             __doc__.split("Run:")[0].strip(), "",
             f"**Budget** (this machine: 2 CPU cores, {args['jobs']} runs in parallel, {args['threads']} thread each): "
             f"{args['epochs']} epochs (patience {args['patience']} on validation mean accuracy), Adam lr "
             f"{args['lr']} with cosine decay over the epochs, batch {args['batch_size']}"
             + (f"; training sets capped at {args['max_rows']} rows" if args["max_rows"] else "") + ".", ""]
    summary: dict[str, Any] = {}
    order = [SINGLE, *ARCHITECTURES]
    mm = [r for r in rows if r["part"] == "multimnist"]
    if mm:
        table, summary["multimnist"] = _digits_table(mm, order, "## MultiMNIST: every architecture, equal weighting "
                                                                "(test, mean ± std over seeds)")
        lines += table
        check = [r for r in rows if r["part"] == "convergence"]
        single = [r for r in mm if r["model"] == SINGLE and r["seed"] == 0]
        if check and single:
            c, s = check[0], single[0]
            lines += [f"Convergence check (seed 0): the single-task CNNs reach {100 * s['test']['left']['accuracy']:.2f} / "
                      f"{100 * s['test']['right']['accuracy']:.2f} % with {args['epochs']} epochs and "
                      f"{100 * c['test']['left']['accuracy']:.2f} / {100 * c['test']['right']['accuracy']:.2f} % with "
                      f"{c['epochs']} (best epochs {s['best_epoch']} and {c['best_epoch']}).", ""]
    for dataset, name in FASHION.items():
        fr = [r for r in rows if r["part"] == "fashion" and r["dataset"] == dataset]
        if fr:
            table, summary[dataset] = _digits_table(fr, order, f"## {name} (test, mean ± std over seeds)")
            lines += table
    wr = [r for r in rows if r["part"] == "weightings"]
    if wr:
        from polytask.compare import summarize

        label = wr[0]["model"]
        base = [dict(r, model="equal") for r in mm if r["model"] == label]
        single = [dict(r, model="single") for r in mm if r["model"] == SINGLE]
        ws = summarize([*single, *base, *[dict(r, model=r["weighting"]) for r in wr]], DIGITS, DIGIT_METRICS,
                       baseline="single")
        summary["weightings"] = ws
        lines += [f"## Weightings on {label}, MultiMNIST (test, mean ± std over seeds)", "",
                  "| weighting | seeds | left acc. % | right acc. % | Δm % vs single-task | s/epoch |",
                  "|---|---|---|---|---|---|"]
        for w in ["equal", *WEIGHTINGS]:
            if w not in ws:
                continue
            e = ws[w]
            d = e["delta_m"]
            lines.append(f"| {w} | {e['left']['accuracy']['n']} | {_cell(e['left']['accuracy'])} | "
                         f"{_cell(e['right']['accuracy'])} | {d['mean']:+.2f} ± {d['std']:.2f} | "
                         f"{e['seconds_per_epoch']['mean']:.1f} |")
        lines.append("")
    if mm or any(r["part"] == "fashion" for r in rows):
        lines += _published()
    fr = [r for r in rows if r["part"] == "utkface"]
    grid = [r for r in rows if r["part"] == "utkface-grid"]
    if grid:
        lines += ["## UTKFace fixed-weight grid (seed 0; chosen on validation mean relative loss)", "",
                  "| weights (age, gender, race) | val. mean relative loss | val. age MAE | val. gender acc. % | "
                  "val. race acc. % |", "|---|---|---|---|---|"]
        for r in sorted(grid, key=lambda r: r["weighting"]):
            v = r["validation"]
            lines.append(f"| {r['weighting'][6:]} | {r['best_monitor']:.4f} | "
                         f"{v['age']['mae']:.2f} | {100 * v['gender']['accuracy']:.2f} | {100 * v['race']['accuracy']:.2f} |")
        lines.append("")
    if fr:
        from polytask.compare import summarize

        fs = summarize([dict(r, model=r["weighting"]) for r in fr], list(FACE_METRICS), FACE_METRICS, baseline=None)
        summary["utkface"] = fs
        lines += ["## UTKFace: equal vs uncertainty vs best fixed weights (test, mean ± std over seeds)", "",
                  "| weighting | seeds | age MAE (years) | gender acc. % | race acc. % | s/epoch |", "|---|---|---|---|---|---|"]
        for w, e in fs.items():
            lines.append(f"| {w} | {e['age']['mae']['n']} | {_cell(e['age']['mae'], 1.0)} | "
                         f"{_cell(e['gender']['accuracy'])} | {_cell(e['race']['accuracy'])} | "
                         f"{e['seconds_per_epoch']['mean']:.1f} |")
        lines += ["", "Published (Pareto MTL supplement, Table 1: ResNet-18 on all of UTKFace, split and image size not "
                  "stated; 'age L1-loss' probably not years): single task gender 87.9 %, race 78.1 %, age 13.55; "
                  "fixed 1/3 each 87.4 %, 78.4 %, 13.90; uncertainty 88.0 %, 77.0 %, 13.97. Not comparable in absolute "
                  "terms (crop_part1 only, a small CNN, small faces); the question here is Kendall et al.'s: do "
                  "learned uncertainty weights match the best hand-tuned fixed weights?", ""]
    if speed:
        lines += ["## Images/s on this machine (2 threads, nothing else running; generated inputs)", "",
                  "| model | image | params | training images/s | inference images/s |", "|---|---|---|---|---|"]
        for s in speed:
            lines.append(f"| {s['model']} | {s['image']} | {s['parameters']:,} | {s['train']:,.0f} | {s['inference']:,.0f} |")
        lines.append("")
    lines += [f"Command: `python benchmarks/vision.py {' '.join(sys.argv[1:])}`".rstrip() + f" ({minutes:.0f} min"
              + (", including the merged earlier runs" if args.get("merge") else "") + ")"]
    return "\n".join(lines) + "\n", summary


def _published() -> list[str]:
    lines = ["## Published numbers (test accuracy %, left / right)", "",
             "| data set | source | left | right |", "|---|---|---|---|"]
    for dataset, entries in PAPER.items():
        for source, (left, right) in entries.items():
            lines.append(f"| {dataset} | {source} | {left} | {right} |")
    return lines + ["", "What differs: Pareto MTL trains on 120,000 un-resized 36x36 images (conv 9x9 first layer, "
                    "no validation split, 100 epochs of SGD); Sener & Koltun resize with nearest neighbour, place the "
                    "digits at fixed offsets and train on all 60,000 MNIST images. Here: 50,000 training images, "
                    "bilinear resizing, random shifts, a held-out validation split for model selection.", ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-rows", type=int, default=None, help="cap the training rows (validation/test in proportion)")
    ap.add_argument("--face-size", type=int, default=48)
    ap.add_argument("--face-epochs", type=int, default=20)
    ap.add_argument("--parts", default="multimnist,fashion,weightings,utkface,speed")
    ap.add_argument("--architectures", default=None, help="comma-separated subset of the architectures (labels)")
    ap.add_argument("--best", default=None, help="architectures for the fashion part (default: part 1's top 3)")
    ap.add_argument("--best-weighting-model", default=None, help="architecture for the weightings part")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, 2,000 training rows")
    ap.add_argument("--name", default="vision")
    ap.add_argument("--merge", default=None, help="an earlier results JSON: its runs are kept, not trained again")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.face_epochs, args.max_rows = 1, 2, 2, args.max_rows or 2000
    opts = vars(args)
    rows: list[dict[str, Any]] = []
    speed: list[dict[str, Any]] = []
    previous = 0.0
    if args.merge:
        earlier = json.loads(Path(args.merge).read_text())
        rows, speed, previous = earlier["rows"], earlier.get("speed", []), earlier.get("minutes", 0.0)
    start = time.time()
    while True:  # the UTKFace grid's choice feeds the next round
        candidates = jobs(opts, rows)  # may add a reused row to rows
        done = {(r["part"], r["dataset"], r["model"], r["weighting"], r["seed"]) for r in rows}
        todo = [j for j in candidates if j[:5] not in done]
        if not todo:
            break
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [(j, pool.submit(_job, *j, opts)) for j in todo]
            for (part, dataset, label, weighting, seed, _), f in futures:
                r = f.result()
                rows.append(r)
                shown = {t: {m: round(v, 4) for m, v in r["test"][t].items() if m not in ("count", "loss")}
                         for t in r["test"] if isinstance(r["test"][t], dict)}
                print(f"[{(time.time() - start) / 60:5.1f} min] {dataset} {label} {weighting} seed {seed}: {shown} "
                      f"({r['epochs']} epochs, best {r['best_epoch']}, {r['seconds_per_epoch']:.1f} s/epoch, "
                      f"{r['parameters']:,} params)", flush=True)
                write_results(args.name, {"environment": environment(), "args": opts, "rows": rows, "speed": speed,
                                          "minutes": previous + (time.time() - start) / 60}, "(in progress)\n")
    if "speed" in args.parts.split(",") and not (args.merge and speed):
        speed = speed_rows()
    minutes = (time.time() - start) / 60 + previous
    text, summary = markdown(rows, speed, opts, minutes)
    print(text)
    write_results(args.name, {"environment": environment(), "args": opts, "paper": PAPER, "summary": summary,
                              "rows": rows, "speed": speed, "minutes": minutes}, text)


if __name__ == "__main__":
    main()
