"""Tiny trained runs for the report tests (trained once per session, a few seconds in all) and
the report of all of them.

The runs read their data from Parquet files (so the calibration section can read the validation
split again), except DRN, trained on in-memory tables: its data cannot be read back, which the
calibration section must say instead of failing. ESMM trains on the ``entire_space`` generator.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import polytask

FEATURES = {"numeric": ["x0", "x1", "x2", "x3"], "categorical": ["c"]}
TASKS = [{"name": "a"}, {"name": "b"}, {"name": "r", "kind": "regression"}]
TRAIN = {"epochs": 3, "batch_size": 64, "log_every": 2, "progress": False, "seed": 0, "device": "cpu"}

#: run name -> (model, weighting); every run but esmm and drn reads the Parquet files
MODELS = {
    "mmoe_pcgrad": ({"name": "mmoe", "num_experts": 3}, "pcgrad"),
    "ple": ({"name": "ple", "num_levels": 2}, "equal"),
    "cross_stitch": ({"name": "cross_stitch", "hidden": [8, 8]}, "equal"),
    "drn": ({"name": "drn"}, "equal"),
    "fafs": ({"name": "fafs", "warmup_epochs": 1, "widen_every": 1, "hidden": [8, 8]}, "equal"),
    "single_task": ({"name": "single_task"}, "equal"),
}


def make_table(n: int = 700, seed: int = 0) -> pa.Table:
    """Two binary tasks and a regression task on four numeric features and a category; task b's
    label is missing in a tenth of the rows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    cat = rng.integers(0, 5, size=n)
    a = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * x[:, 0] + x[:, 1])))).astype(np.float32)
    b = (rng.random(n) < 1 / (1 + np.exp(-(x[:, 2] - x[:, 1])))).astype(np.float32)
    b[rng.random(n) < 0.1] = np.nan
    r = (x[:, 3] + 0.5 * x[:, 0] + 0.3 * rng.normal(size=n)).astype(np.float32)
    return pa.table({f"x{i}": x[:, i] for i in range(4)} | {"c": [f"c{v}" for v in cat], "a": a, "b": b, "r": r})


@pytest.fixture(scope="session")
def run_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report_runs")
    table = make_table()
    files = {}
    for split, (start, stop) in {"train": (0, 400), "validation": (400, 550), "test": (550, 700)}.items():
        files[split] = root / f"{split}.parquet"
        pq.write_table(table.slice(start, stop - start), files[split])
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only wait for each other (and for a busy machine)
    try:
        _train(root, table, files, out)
    finally:
        torch.set_num_threads(threads)
    return out


def _train(root: Path, table: pa.Table, files: dict[str, Path], out: dict[str, Path]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (model, weighting) in MODELS.items():
            if name == "drn":
                data = {"train": table.slice(0, 400), "validation": table.slice(400, 150), "test": table.slice(550)}
            else:
                data = {k: str(v) for k, v in files.items()}
            polytask.fit(**data, features=FEATURES, tasks=TASKS, model=model, weighting=weighting,
                         out=root / name, **TRAIN)
            out[name] = root / name
        polytask.fit(dataset="entire_space", dataset_params={"rows": 1200, "num_users": 100, "num_items": 80, "seed": 0},
                     model={"name": "esmm"}, out=root / "esmm", **{**TRAIN, "batch_size": 128})
        out["esmm"] = root / "esmm"


@pytest.fixture(scope="session")
def report_path(run_dirs, tmp_path_factory) -> Path:
    """The report of every run (the comparison included), written once."""
    from polytask.report import write_report

    out = tmp_path_factory.mktemp("report") / "report.html"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_report(list(run_dirs.values()), out, title="all the runs")
    report_warnings = [str(w.message) for w in caught if w.category.__name__ == "ReportWarning"]
    assert not report_warnings, report_warnings
    return out


@pytest.fixture(scope="session")
def report_html(report_path) -> str:
    return report_path.read_text()
