"""Shared fixtures: small generated multi-task data (no files committed)."""

from __future__ import annotations

from collections.abc import Callable

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


LabelMaker = Callable[[Task, int, torch.Generator, int], tuple[torch.Tensor, torch.Tensor]]


def _binary(t: Task, n: int, g: torch.Generator, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(0, 2, (n,), generator=g).float(), torch.ones(n, dtype=torch.bool)


def _regression(t: Task, n: int, g: torch.Generator, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, generator=g), torch.ones(n, dtype=torch.bool)


def _multiclass(t: Task, n: int, g: torch.Generator, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(0, t.num_classes, (n,), generator=g), torch.ones(n, dtype=torch.bool)


def _multilabel(t: Task, n: int, g: torch.Generator, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = t.output_dim
    return torch.randint(0, 2, (n, k), generator=g).float(), torch.ones(n, k, dtype=torch.bool)


def _ranking(t: Task, n: int, g: torch.Generator, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    relevance = torch.randint(0, 3, (n,), generator=g).float()
    group = torch.randint(0, max(1, n // 4), (n,), generator=g).float()
    return torch.stack([relevance, group], 1), torch.ones(n, dtype=torch.bool)


def _tagging(t: Task, n: int, g: torch.Generator, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    # rows of 1..width tokens, left-aligned like the sequence encoder lays them out
    lengths = torch.randint(1, width + 1, (n,), generator=g)
    return torch.randint(0, t.output_dim, (n, width), generator=g), torch.arange(width)[None, :] < lengths[:, None]


#: ``kind -> maker(task, n, generator, token_width) -> (label, mask)``: labels every registered
#: kind can be trained on in the model/weighting tests (tests/tasks/test_kind_contract.py checks
#: that every registered kind has one)
LABEL_MAKERS: dict[str, LabelMaker] = {
    "binary": _binary,
    "regression": _regression,
    "multiclass": _multiclass,
    "multilabel": _multilabel,
    "ranking": _ranking,
    "tagging": _tagging,
}

#: options of an example task of every kind (fitted state included, so output_dim is known)
KIND_EXAMPLES: dict[str, dict] = {
    "binary": {},
    "regression": {},
    "multiclass": {"num_classes": 3},
    "multilabel": {"classes": ["a", "b", "c", "d"]},
    "ranking": {"group": "query"},
    "tagging": {"tokens": "hist", "max_len": 5, "scheme": "bio", "classes": ["O", "B-X", "I-X", "B-Y", "I-Y"]},
}


def example_task(kind: str, name: str = "t") -> Task:
    """A task of ``kind`` with :data:`KIND_EXAMPLES` options (a tagging task labels ``hist``)."""
    return Task(name, kind=kind, **KIND_EXAMPLES[kind])


def make_batch(spec: InputSpec, tasks: list[Task], n: int, seed: int = 0) -> Batch:
    """Random features for ``spec`` (sequences 5 wide) and labels for ``tasks`` (all labelled
    but a token-level task's padding), from :data:`LABEL_MAKERS`."""
    g = torch.Generator().manual_seed(seed)
    features = {"numeric": torch.randn(n, spec.numeric_dim, generator=g)}
    if spec.cardinalities:
        features["categorical"] = torch.stack([torch.randint(0, c, (n,), generator=g) for c in spec.cardinalities], 1)
    for name, size in spec.sequences.items():
        features[f"seq:{name}"] = torch.randint(0, size, (n, 5), generator=g)
    labels, masks = {}, {}
    for t in tasks:
        width = 0
        if t.level == "token":
            key = f"seq:{t.spec.token_feature}"
            if key not in features:
                raise ValueError(f"make_batch: task {t.name!r} labels the tokens of {t.spec.token_feature!r}, not in spec.sequences")
            width = features[key].shape[1]
        labels[t.name], masks[t.name] = LABEL_MAKERS[t.kind](t, n, g, width)
    return Batch(features, labels, masks, {})


#: models that read only text features (JMT): the registry-driven model tests give them this input
#: spec (a text and a second text for sentence-pair features), a tagging task on the text in front of
#: the generated tasks (see :func:`model_tasks`), and these hyperparameters (small widths; every
#: output layer drawn at random, so every parameter gets a gradient from the first step)
TEXT_ONLY_SPEC = InputSpec(sequences={"text": 9, "text_b": 9})
TEXT_ONLY_MODELS: dict[str, dict] = {
    "jmt": {"text": "text", "pair": "text_b", "dim": 6, "hidden": 4, "label_dim": 3, "zero_init": False},
}


def model_spec(name: str) -> InputSpec:
    """The input spec the model tests build ``name`` on: :data:`SPEC`, or :data:`TEXT_ONLY_SPEC`."""
    return TEXT_ONLY_SPEC if name in TEXT_ONLY_MODELS else SPEC


def model_tasks(name: str, n: int) -> list[Task]:
    """``n`` tasks for model ``name``: :func:`make_tasks`, or for a text-only model a tagging task
    on its text followed by ``n - 1`` generated ones."""
    if name not in TEXT_ONLY_MODELS:
        return make_tasks(n)
    return [Task("tag", kind="tagging", tokens="text", max_len=5, num_classes=4)] + make_tasks(n - 1)


def model_params(name: str) -> dict:
    """Hyperparameters the model tests add for ``name`` (those of :data:`TEXT_ONLY_MODELS`)."""
    return dict(TEXT_ONLY_MODELS.get(name, {}))


def make_frame(n: int, seed: int):
    """A small clicks table (pandas) for end-to-end runs: age, city, score, a binary ``click``
    driven by score, a three-way ``segment`` and a regression target ``spend``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    score = rng.normal(size=n).round(4)
    city = rng.choice(["paris", "rome", "oslo"], n)
    age = rng.integers(18, 70, n)
    return pd.DataFrame({
        "age": age, "city": city, "score": score,
        "click": (rng.random(n) < 1 / (1 + np.exp(-2 * score))).astype(np.int64),
        "segment": np.where(score > 0.5, "high", np.where(score < -0.5, "low", "mid")),
        "spend": (age * 0.05 + score + rng.normal(size=n) * 0.1).round(3),
    })


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
