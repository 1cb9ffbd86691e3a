"""Every registered task kind keeps the TaskKind contract (iterates the registry, not a list)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import KIND_EXAMPLES, LABEL_MAKERS, example_task
from polytask.metrics import known_directions
from polytask.registry import TASK_KINDS
from polytask.tasks import Task

KINDS = TASK_KINDS.names()
N, WIDTH = 16, 5


def _dependency(t: Task, n: int, g: torch.Generator, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    # rows of 1..width tokens, each with a head among 0..length and a relation: head + (max_len + 1) * relation
    lengths = torch.randint(1, width + 1, (n,), generator=g)
    head = (torch.rand(n, width, generator=g) * (lengths[:, None] + 1)).long()
    relation = torch.randint(0, max(t.spec.num_relations, 1), (n, width), generator=g)
    mask = torch.arange(width)[None, :] < lengths[:, None]
    return torch.where(mask, head + (t.spec.max_len + 1) * relation, 0), mask


def _relatedness(t: Task, n: int, g: torch.Generator, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    spec = t.spec
    return spec.low + torch.rand(n, generator=g) * (spec.high - spec.low), torch.ones(n, dtype=torch.bool)


# Label makers and example options of the dependency and relatedness kinds. They belong in
# tests/conftest.py beside the others (so make_batch can label them too); until they move there,
# they are registered here, for this module's tests.
LABEL_MAKERS.setdefault("dependency", _dependency)
LABEL_MAKERS.setdefault("relatedness", _relatedness)
KIND_EXAMPLES.setdefault("dependency", {"tokens": "hist", "max_len": WIDTH, "relations": "deprel",
                                        "classes": ["nsubj", "obj", "root"]})
KIND_EXAMPLES.setdefault("relatedness", {"low": 1, "high": 5})


def _batch(kind: str, seed: int = 0) -> tuple[Task, torch.Tensor, torch.Tensor, torch.Tensor]:
    """An example task of ``kind``, random outputs (requiring grad), its labels and mask."""
    task = example_task(kind)
    g = torch.Generator().manual_seed(seed)
    label, mask = LABEL_MAKERS[kind](task, N, g, WIDTH)
    shape = (N,) + ((WIDTH,) if task.level == "token" else ()) + (() if task.spec.scalar_output else (task.output_dim,))
    output = torch.randn(shape, generator=g).requires_grad_()
    return task, output, label, mask


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape + (1,) * (like.dim() - mask.dim())).expand_as(like)


def test_every_kind_has_a_label_maker_and_an_example():
    assert set(KINDS) >= {"binary", "regression", "multiclass", "multilabel", "ranking", "tagging"}
    missing = [k for k in KINDS if k not in LABEL_MAKERS or k not in KIND_EXAMPLES]
    assert not missing, f"add a label maker and example options to tests/conftest.py for: {missing}"


@pytest.mark.parametrize("kind", KINDS)
def test_labels_have_the_shapes_the_kind_declares(kind):
    task, output, label, mask = _batch(kind)
    assert task.level in ("row", "token")
    assert label.shape[0] == mask.shape[0] == output.shape[0] == N
    assert output.shape[: mask.dim()] == mask.shape  # the mask is a prefix of the output's shape
    assert label.dtype == task.spec.label_dtype or label.is_floating_point() == task.spec.label_dtype.is_floating_point


@pytest.mark.parametrize("kind", KINDS)
def test_loss_finite_with_grad(kind):
    task, output, label, mask = _batch(kind)
    loss = task.loss(output, label, mask)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_all_false_mask_gives_zero_attached_loss(kind):
    task, output, label, mask = _batch(kind)
    loss = task.loss(output, label, torch.zeros_like(mask))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (output.grad == 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_nan_placeholders_in_masked_elements_do_not_leak(kind):
    task, output, label, mask = _batch(kind)
    g = torch.Generator().manual_seed(1)
    mask = mask & (torch.rand(mask.shape, generator=g) < 0.6)
    clean = task.loss(output, label, mask)
    # masked elements: NaN outputs, NaN (float) or -1 (integer) labels
    bad_label = label.clone()
    bad_label[~_expand(mask, label)] = float("nan") if label.is_floating_point() else -1
    out = output.detach().clone()
    out[~_expand(mask, out)] = float("nan")
    out.requires_grad_()
    loss = task.loss(out, bad_label, mask)
    assert torch.isfinite(loss) and math.isclose(loss.item(), clean.item(), rel_tol=1e-5, abs_tol=1e-7)
    loss.backward()
    assert torch.isfinite(out.grad).all()
    assert (out.grad[~_expand(mask, out)] == 0).all()
    per_row = task.per_example_loss(out.detach(), bad_label, mask)
    assert per_row.shape == (N,)
    unlabelled = ~(mask if mask.dim() == 1 else mask.flatten(1).any(1))
    assert torch.isnan(per_row[unlabelled]).all() and torch.isfinite(per_row[~unlabelled]).any()


@pytest.mark.parametrize("kind", KINDS)
def test_unit_weights_equal_the_unweighted_loss(kind):
    task, output, label, mask = _batch(kind)
    a = task.loss(output, label, mask)
    b = task.loss(output, label, mask, torch.ones(N))
    assert torch.allclose(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_metrics_have_directions_and_are_computed(kind):
    task, output, label, mask = _batch(kind)
    metrics = task.spec.metrics()
    assert metrics and all(isinstance(m.higher_is_better, bool) for m in metrics)
    directions = known_directions()
    for m in TASK_KINDS.get(kind).example().metrics():
        assert directions[m.name] == m.higher_is_better
    values = task.spec.compute_metrics(output.detach(), label, mask)
    assert set(values) == {"count", *task.metrics}
    assert values["count"] == N
    assert all(isinstance(v, float) and math.isfinite(v) for k, v in values.items() if k != "count")
    empty = task.spec.compute_metrics(output.detach(), label, torch.zeros_like(mask))
    assert empty["count"] == 0 and all(math.isnan(empty[m]) for m in task.metrics)


@pytest.mark.parametrize("kind", KINDS)
def test_options_round_trip(kind):
    task = example_task(kind)
    again = Task(**task.to_dict())
    assert again == task and again.spec.options() == task.spec.options()
    assert vars(again.spec) == vars(task.spec)  # every option and fitted state survives
    assert set(task.spec.options()) >= set(KIND_EXAMPLES[kind])
    assert type(again.spec) is TASK_KINDS.get(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_predict_and_prediction_columns(kind):
    task, output, label, mask = _batch(kind)
    pred = task.predict(output.detach())
    # one prediction per labelled element (a row, a token); a vector kind may reduce its vector
    # (relatedness predicts the expected score of its K logits)
    assert pred.shape[: mask.dim()] == output.shape[: mask.dim()] and torch.isfinite(pred).all()
    if task.level == "token":
        return  # needs the input table's text column: tests/tasks/test_tagging.py
    import pyarrow as pa

    cols = task.spec.prediction_columns(task.name, pred.numpy(), pa.table({"x": list(range(N))}))
    assert task.name in cols and all(len(c) == N for c in cols.values())
