"""Label encoding: values, masks (missing labels and ``where`` sample spaces), classes fitted on
train, sample weights, and errors that name the file, column, row and value."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from polytask.data.labels import LabelEncoder
from polytask.errors import DataError
from polytask.tasks import Task


def encode(task: Task, table: pa.Table, source: str = "train.csv", fit: bool = True):
    enc = LabelEncoder(task)
    if fit:
        enc.fit(table, source)
    return enc.encode(table, source)


# -- binary -------------------------------------------------------------------------------------
@pytest.mark.parametrize("col", [
    pa.array([0, 1, None, 1]),
    pa.array([0.0, 1.0, None, 1.0]),
    pa.array([False, True, None, True]),
    pa.array(["0", "1", None, "1"]),
    pa.array(["false", "True", "", " 1 "]),
])
def test_binary_labels_and_null_mask(col):
    label, mask, weight = encode(Task("ctr"), pa.table({"ctr": col}))
    assert label.dtype == np.float32 and mask.dtype == bool
    assert mask.tolist() == [True, True, False, True]
    assert label.tolist() == [0.0, 1.0, 0.0, 1.0]  # masked rows hold the 0 placeholder
    assert weight is None


@pytest.mark.parametrize("col, value", [
    (pa.array([0, 1, 2, 1]), "2"),
    (pa.array([0.0, 1.0, 0.5, None]), "0.5"),
    (pa.array([0, 1, -1, 0]), "-1"),
])
def test_binary_numeric_label_outside_0_1_names_file_column_row_value(col, value):
    with pytest.raises(DataError) as exc:
        encode(Task("ctr", label="clicked"), pa.table({"clicked": col}), "data/val.csv")
    msg = str(exc.value)
    assert "val.csv" in msg and "'clicked'" in msg and "row 2" in msg and value in msg


def test_binary_string_label_without_positive_names_value():
    with pytest.raises(DataError) as exc:
        encode(Task("buy"), pa.table({"buy": ["0", "1", "yes"]}), "train.parquet")
    msg = str(exc.value)
    assert "train.parquet" in msg and "'buy'" in msg and "row 2" in msg and "'yes'" in msg
    assert "positive" in msg  # tells the user how to fix it


def test_binary_string_labels_with_positive():
    table = pa.table({"churn": ["yes", "no", None, "yes", "maybe"]})
    label, mask, _ = encode(Task("churn", positive="yes"), table)
    assert label.tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert mask.tolist() == [True, True, False, True, True]


def test_binary_positive_on_numeric_column():
    label, mask, _ = encode(Task("grade", positive=5), pa.table({"grade": [5, 3, None, 5]}))
    assert label.tolist() == [1.0, 0.0, 0.0, 1.0] and mask.tolist() == [True, True, False, True]


def test_all_empty_label_column_masks_every_row():
    label, mask, _ = encode(Task("ctr"), pa.table({"ctr": pa.array([None, None], pa.null())}))
    assert not mask.any() and label.tolist() == [0.0, 0.0]


# -- regression ---------------------------------------------------------------------------------
def test_regression_labels_nan_and_null_masked():
    table = pa.table({"y": pa.array([1.5, None, float("nan"), -2.0])})
    label, mask, _ = encode(Task("y", "regression", standardize=False), table)
    assert mask.tolist() == [True, False, False, True]
    assert label.tolist() == [1.5, 0.0, 0.0, -2.0]
    assert np.isfinite(label).all()


# -- where --------------------------------------------------------------------------------------
def test_where_masks_rows_outside_the_sample_space():
    table = pa.table({"click": [1, 0, 1, None, 1], "buy": [1, 0, None, 0, 0]})
    label, mask, _ = encode(Task("cvr", label="buy", where="click == 1"), table)
    # row 1: not clicked; row 2: clicked but unlabelled; row 3: click unknown
    assert mask.tolist() == [True, False, False, False, True]
    assert label.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_where_missing_column_is_an_error_naming_it():
    table = pa.table({"buy": [1, 0]})
    with pytest.raises(DataError) as exc:
        encode(Task("cvr", label="buy", where="clicked == 1"), table, "test.csv")
    assert "'clicked'" in str(exc.value) and "test.csv" in str(exc.value)


# -- multiclass ---------------------------------------------------------------------------------
def test_multiclass_classes_fitted_on_train():
    task = Task("genre", "multiclass")
    enc = LabelEncoder(task).fit(pa.table({"genre": ["rock", "jazz", "pop", None, "jazz"]}), "train")
    assert task.classes == ["jazz", "pop", "rock"] and task.num_classes == 3 and task.output_dim == 3
    label, mask, _ = enc.encode(pa.table({"genre": ["pop", None, "rock", "jazz"]}), "val")
    assert label.dtype == np.int64
    assert label.tolist() == [1, 0, 2, 0] and mask.tolist() == [True, False, True, True]
    assert task.spec.decode(np.array([2, 0, 1])) == ["rock", "jazz", "pop"]


def test_multiclass_integer_labels_and_float_with_nulls_agree():
    task = Task("k", "multiclass")
    enc = LabelEncoder(task).fit(pa.table({"k": [2, 0, 5, 2]}), "train")
    assert task.classes == [0, 2, 5]
    label, mask, _ = enc.encode(pa.table({"k": pa.array([5.0, None, 0.0, 2.0])}), "val.csv")
    assert label.tolist() == [2, 0, 0, 1] and mask.tolist() == [True, False, True, True]
    label2, _, _ = enc.encode(pa.table({"k": ["5", "2"]}), "val.csv")
    assert label2.tolist() == [2, 1]


def test_multiclass_unseen_class_at_transform_is_an_error():
    task = Task("genre", "multiclass")
    enc = LabelEncoder(task).fit(pa.table({"genre": ["a", "b", "a"]}), "train.csv")
    with pytest.raises(DataError) as exc:
        enc.encode(pa.table({"genre": ["a", "b", "c"]}), "test.csv")
    msg = str(exc.value)
    assert "test.csv" in msg and "'genre'" in msg and "'c'" in msg and "row 2" in msg


def test_multiclass_needs_two_classes():
    with pytest.raises(DataError, match="'k'"):
        LabelEncoder(Task("k", "multiclass")).fit(pa.table({"k": [1, 1, None]}), "train")


def test_multiclass_given_classes_are_not_refitted():
    task = Task("k", "multiclass", classes=["lo", "mid", "hi"], num_classes=3)
    enc = LabelEncoder(task).fit(pa.table({"k": ["hi", "lo"]}), "train")
    assert task.classes == ["lo", "mid", "hi"]
    label, _, _ = enc.encode(pa.table({"k": ["hi", "mid", "lo"]}), "train")
    assert label.tolist() == [2, 1, 0]


# -- weights ------------------------------------------------------------------------------------
def test_weight_column():
    table = pa.table({"y": [1.0, 2.0, 3.0], "w": [0.5, None, 2.0]})
    _, mask, weight = encode(Task("y", "regression", weight_column="w"), table)
    assert weight.dtype == np.float32
    assert weight.tolist() == [0.5, 0.0, 2.0]  # a missing weight counts as 0
    assert mask.tolist() == [True, True, True]


def test_negative_weight_is_an_error():
    table = pa.table({"y": [1.0, 2.0], "w": [1.0, -1.0]})
    with pytest.raises(DataError, match="'w'"):
        encode(Task("y", "regression", weight_column="w"), table)


def test_multiclass_declared_num_classes_keeps_a_class_absent_from_train():
    task = Task("m", kind="multiclass", num_classes=4)
    enc = LabelEncoder(task).fit(pa.table({"m": [0, 1, 1, 3]}), "train.csv")
    assert task.classes == [0, 1, 2, 3] and task.output_dim == 4
    label, mask, _ = enc.encode(pa.table({"m": [2, 3]}), "val.csv")
    assert label.tolist() == [2, 3] and mask.all()


def test_multiclass_declared_num_classes_mismatch_is_an_error():
    task = Task("m", kind="multiclass", num_classes=2)
    with pytest.raises(DataError, match="num_classes=2"):
        LabelEncoder(task).fit(pa.table({"m": ["a", "b", "c"]}), "train.csv")
