"""Shared fixtures: small generated multi-task data (no files committed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytask.data.schema import InputSpec
from polytask.data.table import Batch
from polytask.tasks import Task

KIND_CYCLE = ("binary", "regression", "multiclass")


def make_tasks(n: int) -> list[Task]:
    """n tasks cycling through the three kinds (multiclass with 3 classes)."""
    return [Task(f"t{i}", kind=k, num_classes=3 if k == "multiclass" else None)
            for i, k in enumerate(KIND_CYCLE[j % 3] for j in range(n))]


SPEC = InputSpec(numeric_dim=3, cardinalities=[4, 7], sequences={"hist": 6}, numeric_names=["a", "b", "c"],
                 categorical_names=["u", "v"])


def make_batch(spec: InputSpec, tasks: list[Task], n: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    features = {"numeric": torch.randn(n, spec.numeric_dim, generator=g)}
    features["categorical"] = torch.stack([torch.randint(0, c, (n,), generator=g) for c in spec.cardinalities], 1)
    for name, size in spec.sequences.items():
        features[f"seq:{name}"] = torch.randint(0, size, (n, 5), generator=g)
    labels, masks = {}, {}
    for t in tasks:
        if t.kind == "binary":
            labels[t.name] = torch.randint(0, 2, (n,), generator=g).float()
        elif t.kind == "regression":
            labels[t.name] = torch.randn(n, generator=g)
        else:
            labels[t.name] = torch.randint(0, t.num_classes, (n,), generator=g)
        masks[t.name] = torch.ones(n, dtype=torch.bool)
    return Batch(features, labels, masks, {})


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
