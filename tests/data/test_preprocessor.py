"""Preprocessor: declaration checks, column checks, grouped tensors, InputSpec widths and a
lossless save/load round trip."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec, InputSpec
from polytask.errors import DataError
from polytask.tasks import Task


def make_table(n: int = 40, seed: int = 0, with_nan: bool = True) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n)
    income = rng.lognormal(10, 1, n)
    if with_nan:
        age[::7] = np.nan
    return pa.table({
        "age": pa.array(age, from_pandas=True),  # NaN -> null
        "income": income,
        "city": rng.choice(["paris", "rome", "oslo", "lima"], n).tolist(),
        "device": rng.integers(0, 3, n),
        "hist": ["|".join(rng.choice(list("abcde"), rng.integers(0, 6))) for _ in range(n)],
        "img": [rng.normal(size=6).tolist() for _ in range(n)],
        "click": rng.integers(0, 2, n),
        "buy": rng.integers(0, 2, n),
        "genre": rng.choice(["x", "y", "z"], n).tolist(),
        "w": rng.random(n),
    })


def make_pre() -> Preprocessor:
    features = [
        FeatureSpec("age", "numeric"),
        FeatureSpec("city", "categorical"),
        FeatureSpec("income", "numeric", log1p=True, scale="minmax"),
        FeatureSpec("device", "categorical"),
        FeatureSpec("hist", "sequence", max_len=4),
        FeatureSpec("img", "dense", shape=[2, 3]),
    ]
    tasks = [
        Task("click"),
        Task("cvr", label="buy", where="click == 1", weight_column="w"),
        Task("genre", "multiclass"),
    ]
    return Preprocessor(features, tasks)


def test_transform_groups_and_shapes():
    pre = make_pre().fit(make_table(), "train.csv")
    tt = pre.transform(make_table(15, seed=1), "val.csv")
    assert len(tt) == 15
    assert set(tt.features) == {"numeric", "categorical", "seq:hist", "dense:img"}
    # age has NaN in train -> value + indicator; income -> 1 column
    assert tt.features["numeric"].shape == (15, 3) and tt.features["numeric"].dtype == torch.float32
    assert tt.features["categorical"].shape == (15, 2) and tt.features["categorical"].dtype == torch.int32
    assert tt.features["seq:hist"].shape == (15, 4)
    assert tt.features["dense:img"].shape == (15, 2, 3)
    assert set(tt.labels) == set(tt.masks) == {"click", "cvr", "genre"}
    assert set(tt.weights) == {"cvr"}
    assert tt.labels["genre"].dtype == torch.int64


def test_numeric_columns_follow_declaration_order():
    table = make_table()
    pre = make_pre().fit(table, "train")
    num = pre.transform(table, "train").features["numeric"].numpy()
    age = table.column("age").to_numpy(zero_copy_only=False)
    seen = age[~np.isnan(age)]
    expected_age = (np.where(np.isnan(age), seen.mean(), age) - seen.mean()) / seen.std()
    np.testing.assert_allclose(num[:, 0], expected_age, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(num[:, 1], np.isnan(age).astype(np.float32))
    inc = np.log1p(table.column("income").to_numpy())
    np.testing.assert_allclose(num[:, 2], (inc - inc.min()) / (inc.max() - inc.min()), rtol=1e-5, atol=1e-6)


def test_where_mask_in_tensor_table():
    table = make_table()
    pre = make_pre().fit(table, "train")
    tt = pre.transform(table, "train")
    click = np.array(table.column("click").to_pylist())
    assert tt.masks["cvr"].numpy().tolist() == (click == 1).tolist()
    assert tt.masks["click"].all()


def test_input_spec_widths():
    pre = make_pre().fit(make_table(), "train")
    spec = pre.input_spec()
    assert spec.numeric_dim == 3
    assert spec.numeric_names == ["age", "income"]
    assert spec.categorical_names == ["city", "device"]
    assert spec.cardinalities == [4 + 1, 3 + 1]
    assert spec.sequences == {"hist": 5 + 2}
    assert spec.dense == {"img": [2, 3]}
    assert InputSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_no_indicator_width_when_train_has_no_nan():
    pre = make_pre().fit(make_table(with_nan=False), "train")
    assert pre.input_spec().numeric_dim == 2
    # NaN at inference is still imputed, without an extra column
    tt = pre.transform(make_table(10, seed=3, with_nan=True), "test")
    assert tt.features["numeric"].shape == (10, 2) and torch.isfinite(tt.features["numeric"]).all()


def test_missing_columns_error_names_all_of_them_and_the_file():
    pre = make_pre()
    table = make_table().drop_columns(["city", "w", "genre"])
    with pytest.raises(DataError) as exc:
        pre.fit(table, "data/train.csv")
    msg = str(exc.value)
    assert "train.csv" in msg
    for col in ("'city'", "'w'", "'genre'"):
        assert col in msg


def test_where_column_is_required():
    pre = make_pre()
    with pytest.raises(DataError, match="'click'"):
        pre.fit(make_table().drop_columns(["click"]), "train.csv")


def test_transform_without_labels_needs_only_features():
    table = make_table()
    pre = make_pre().fit(table, "train")
    features_only = table.select(["age", "income", "city", "device", "hist", "img"])
    tt = pre.transform(features_only, "new.csv", with_labels=False)
    assert tt.labels == {} and len(tt) == table.num_rows
    with pytest.raises(DataError, match="new.csv"):
        pre.transform(features_only, "new.csv")


def test_transform_before_fit_is_an_error():
    with pytest.raises(RuntimeError):
        make_pre().transform(make_table(), "x")


def test_feature_declared_twice_is_an_error():
    with pytest.raises(DataError, match="age"):
        Preprocessor([FeatureSpec("age"), FeatureSpec("city", "categorical"), FeatureSpec("age", "categorical")],
                     [Task("click")])


def test_label_used_as_feature_is_an_error():
    with pytest.raises(DataError, match="buy"):
        Preprocessor([FeatureSpec("age"), FeatureSpec("buy")], [Task("cvr", label="buy")])


def test_no_features_is_an_error():
    with pytest.raises(DataError):
        Preprocessor([], [Task("click")])


def _assert_tables_equal(a, b):
    for attr in ("features", "labels", "masks", "weights"):
        da, db = getattr(a, attr), getattr(b, attr)
        assert set(da) == set(db)
        for k in da:
            assert da[k].dtype == db[k].dtype and torch.equal(da[k], db[k]), (attr, k)


def test_to_dict_from_dict_round_trip_gives_identical_tensors(tmp_path):
    pre = make_pre().fit(make_table(), "train")
    other = make_table(25, seed=5)
    expected = pre.transform(other, "val")
    clone = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    _assert_tables_equal(clone.transform(other, "val"), expected)
    assert clone.input_spec() == pre.input_spec()
    assert [t.classes for t in clone.tasks] == [t.classes for t in pre.tasks]
    pre.save(tmp_path / "encoders.json")
    loaded = Preprocessor.load(tmp_path / "encoders.json")
    _assert_tables_equal(loaded.transform(other, "val"), expected)


def test_multiclass_label_unseen_in_train_fails_at_transform():
    table = make_table()
    pre = make_pre().fit(table, "train")
    bad = table.set_column(table.column_names.index("genre"), "genre", pa.array(["q"] * table.num_rows))
    with pytest.raises(DataError, match="'q'"):
        pre.transform(bad, "test.csv")
