"""A small generated table for the baselines: easy rules, and rows that must be ignored carrying the
opposite rule (outside a task's ``where`` sample space) or no label at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from polytask.baselines import load_tabular
from polytask.config import config_from_dict


def write_table(path: Path, n: int = 1200, seed: int = 0) -> Path:
    """Columns x1, x2 (numeric), c (categorical), g (0/1 sample space of task ``b``) and tasks:
    ``a`` = 1[x1 + 1.5 [c == "k"] > 0.3]; ``b`` = 1[x2 > 0] where g == 1 and the *opposite* where
    g == 0 (rows a correct baseline never learns from), a tenth of its labels missing;
    ``r`` = 2 x1 - x2 + noise (regression); ``m`` = a 3-class rule on x1 and c."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["k", "l", "m", "n"], size=n)
    g = rng.integers(0, 2, size=n)
    rule = (x2 > 0).astype(float)
    b = np.where(g == 1, rule, 1.0 - rule)
    b[rng.random(n) < 0.1] = np.nan
    df = pd.DataFrame({
        "x1": x1, "x2": x2, "c": c, "g": g,
        "a": ((x1 + 1.5 * (c == "k")) > 0.3).astype(float), "b": b,
        "r": 2 * x1 - x2 + rng.normal(scale=0.1, size=n) + 10.0,
        "m": np.where(c == "k", "hi", np.where(x1 > 0, "mid", "lo")),
    })
    df.to_csv(path, index=False)
    return path


def tabular(path: Path, tasks: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    cfg = config_from_dict({"data": {"train": str(path), "features": {"numeric": ["x1", "x2"], "categorical": ["c"]},
                                     "tasks": tasks, "split": {"validation": 0.2, "test": 0.2, "seed": 0}}})
    return load_tabular(cfg)


TASKS = [{"name": "a"}, {"name": "b", "where": "g == 1"}, {"name": "r", "kind": "regression"},
         {"name": "m", "kind": "multiclass"}]


@pytest.fixture(scope="module")
def table_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_table(tmp_path_factory.mktemp("baselines") / "t.csv")


@pytest.fixture(scope="module")
def table(table_path: Path) -> tuple[list[Any], dict[str, Any]]:
    return tabular(table_path, TASKS)


@pytest.fixture(scope="module")
def load_tasks(table_path: Path):
    """The same generated table (same seeded split) with other task declarations."""
    return lambda tasks: tabular(table_path, tasks)
