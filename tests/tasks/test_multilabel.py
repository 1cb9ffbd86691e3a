"""The ``multilabel`` kind: masked BCE by hand, mean AUC and micro-F1 by hand, partial-missing
masks from 0/1 columns, names from list and string columns, prediction columns."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec
from polytask.errors import ConfigError, DataError
from polytask.tasks import Task


def _bce(logit: float, y: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_loss_is_masked_bce_by_hand():
    task = Task("tags", "multilabel", classes=["a", "b"])
    output = torch.tensor([[1.0, -2.0], [0.5, 3.0], [9.0, 9.0]], requires_grad=True)
    label = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([[True, True], [True, False], [False, False]])
    expected = (_bce(1.0, 1) + _bce(-2.0, 0) + _bce(0.5, 0)) / 3  # mean over the 3 labelled elements
    loss = task.loss(output, label, mask)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert (output.grad[~mask] == 0).all()
    per_row = task.per_example_loss(output.detach(), label, mask)
    assert per_row[:2].tolist() == pytest.approx([(_bce(1.0, 1) + _bce(-2.0, 0)) / 2, _bce(0.5, 0)], rel=1e-6)
    assert math.isnan(per_row[2])


def _auc_by_pairs(scores: list[float], labels: list[int]) -> float:
    """Share of (positive, negative) pairs ranked right, ties half."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    right = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return right / (len(pos) * len(neg))


def test_mean_auc_and_micro_f1_by_hand():
    task = Task("tags", "multilabel", classes=["a", "b", "c"])
    output = torch.tensor([[2.0, -1.0, 0.3], [-0.5, 0.4, 1.0], [0.1, 0.2, -2.0], [1.5, -3.0, 0.0]])
    label = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 9.0, 1.0], [0.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, True], [True, True, True], [True, False, True], [True, True, True]])
    m = task.spec.compute_metrics(output, label, mask)
    auc_a = _auc_by_pairs([2.0, -0.5, 0.1, 1.5], [1, 0, 1, 0])  # (1 + 1 + 1 + 0) / 4
    auc_b = _auc_by_pairs([-1.0, 0.4, -3.0], [0, 1, 1])  # row 2 masked: (1 + 0) / 2
    assert (auc_a, auc_b) == (0.75, 0.5)
    assert m["mean_auc"] == pytest.approx((auc_a + auc_b) / 2)  # c has one class: skipped
    # predicted positive (logit >= 0): a rows 0,2,3; b row 1; c rows 0,1,3 -> TP 2+1+3, FP 1+0+0, FN 0+1+1
    assert m["micro_f1"] == pytest.approx(2 * 6 / (2 * 6 + 1 + 2))
    assert m["count"] == 4


def test_columns_form_masks_each_missing_element():
    table = pa.table({"a": [1, 0, None, 1], "b": [None, 1.0, 0.0, 1.0], "c": ["1", "0", "1", None]})
    task = Task("tags", "multilabel", labels=["a", "b", "c"])
    assert task.label_columns() == ["a", "b", "c"] and task.output_dim == 3
    label, mask = task.spec.encode(table, task, "train.csv")
    assert label.dtype == np.float32 and label.shape == mask.shape == (4, 3)
    assert mask.tolist() == [[True, False, True], [True, True, True], [False, True, True], [True, True, False]]
    assert label.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0]]
    with pytest.raises(DataError, match=r"train\.csv: binary label column 'b' holds 2 at row 0"):
        task.spec.encode(pa.table({"a": [1], "b": [2], "c": [0]}), task, "train.csv")


def test_string_and_list_forms_fit_names_on_train():
    train = pa.table({"genres": ["drama|comedy", "", None, "war|drama"]})
    task = Task("genres", "multilabel")
    task.spec.fit(train, task, "train.csv")
    assert task.classes == ["comedy", "drama", "war"]
    label, mask = task.spec.encode(train, task, "train.csv")
    assert label.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 1, 1]]
    assert mask.tolist() == [[True] * 3, [True] * 3, [False] * 3, [True] * 3]  # "" = none applies
    lists = pa.table({"genres": [["war"], [], None]})
    label, mask = task.spec.encode(lists, task, "valid.parquet")
    assert label.tolist() == [[0, 0, 1], [0, 0, 0], [0, 0, 0]] and mask[:, 0].tolist() == [True, True, False]
    with pytest.raises(DataError, match=r"valid\.csv: label column 'genres' holds 'horror' at row 1"):
        task.spec.encode(pa.table({"genres": ["drama", "war|horror"]}), task, "valid.csv")
    assert Task(**task.to_dict()).classes == ["comedy", "drama", "war"]


def test_prediction_columns():
    task = Task("tags", "multilabel", classes=["x", "y", "z"])
    prediction = np.array([[0.9, 0.2, 0.5], [0.1, 0.1, 0.1]], dtype=np.float32)
    cols = task.spec.prediction_columns("tags", prediction, pa.table({"f": [1, 2]}))
    assert cols["tags"].to_pylist() == [["x", "z"], []]
    assert cols["tags_proba"].to_pylist() == [pytest.approx([0.9, 0.2, 0.5]), pytest.approx([0.1, 0.1, 0.1])]


def test_label_columns_are_required_and_not_features():
    task = Task("tags", "multilabel", labels=["a", "b"])
    pre = Preprocessor([FeatureSpec("x")], [task])
    assert pre.required_columns() == ["x", "a", "b"]
    with pytest.raises(ConfigError, match="task 'tags': label column 'b' is also declared as a feature"):
        Preprocessor([FeatureSpec("x"), FeatureSpec("b")], [Task("tags", "multilabel", labels=["a", "b"])])


def test_options_are_checked():
    with pytest.raises(ValueError, match="twice"):
        Task("t", "multilabel", labels=["a", "a"])
    with pytest.raises(ValueError, match="classes must equal labels"):
        Task("t", "multilabel", labels=["a"], classes=["b"])
