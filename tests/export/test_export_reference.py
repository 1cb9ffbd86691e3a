"""The reference preprocessor (numpy and the standard library only) gives exactly the arrays
``Preprocessor.transform`` gives: on census (with unseen categories and missing values added), and
on a generated table with every feature type and option it reads (log1p, min-max, missing
indicators, integer/float/boolean categories, hashing, sequences as lists and as strings, character
n-grams, a shared vocabulary, dense vectors with missing elements); and its errors name the column."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from polytask.data.encoders import char_ngrams as polytask_char_ngrams
from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec
from polytask.export import reference
from polytask.export.inputs import input_groups
from polytask.export.preprocess import preprocess_spec
from polytask.export.reference import ReferencePreprocessor
from polytask.tasks import Task


def assert_same(pre: Preprocessor, table: pa.Table, data=None) -> dict[str, np.ndarray]:
    """The reference's arrays for ``data`` (default: ``table`` as a dict of lists) equal the
    preprocessor's for ``table``: same names, order, dtypes, shapes and values (bit for bit)."""
    spec = json.loads(json.dumps(preprocess_spec(pre)))  # what preprocess.json holds
    got = ReferencePreprocessor(spec)(table.to_pydict() if data is None else data)
    want = pre.transform(table, "input", with_labels=False).features
    assert list(got) == [g.name for g in input_groups(pre)]
    assert {i["group"] for i in spec["inputs"]} == set(want)
    for i in spec["inputs"]:
        a, b = got[i["name"]], want[i["group"]].numpy()
        assert a.dtype == b.dtype and a.shape == b.shape, (i["name"], a.dtype, b.dtype, a.shape, b.shape)
        np.testing.assert_array_equal(a, b, err_msg=i["name"])
    return got


@pytest.fixture(scope="module")
def census():
    from polytask.data.datasets.census_income import CATEGORICAL, NUMERIC, census_income
    from polytask.data.paths import resolve_data_dir

    bundle = census_income(resolve_data_dir(), max_rows=2000, split_seed=0)
    features = [FeatureSpec(c, "numeric") for c in NUMERIC] + [FeatureSpec(c, "categorical") for c in CATEGORICAL]
    pre = Preprocessor(features, [Task("income"), Task("never_married")]).fit(bundle.train, "train")
    return pre, bundle


def test_census_equals_the_preprocessor(census):
    pre, bundle = census
    assert_same(pre, bundle.test)


def test_census_with_unseen_categories_and_missing_values(census):
    pre, bundle = census
    data = bundle.test.slice(0, 200).to_pydict()
    data["class_worker"][:4] = ["never seen in training", None, "", "  Private"]
    data["age"][:3] = [None, float("nan"), -5.0]
    data["capital_gains"][5] = None
    table = pa.table(data)
    got = assert_same(pre, table)
    assert (got["categorical"][:3, 0] == 0).all()  # unseen, missing and empty: the OOV id


def test_records_and_numpy_columns_give_the_same_arrays(census):
    pre, bundle = census
    table = bundle.test.slice(0, 50)
    columns = table.to_pydict()
    records = [dict(zip(columns, row)) for row in zip(*columns.values())]
    assert_same(pre, table, records)
    assert_same(pre, table, table)  # a pyarrow Table
    assert_same(pre, table, {k: np.asarray(v) if k == "age" else v for k, v in columns.items()})


def every_type(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(15)]
    amount = rng.lognormal(3, 2, n)
    amount[rng.random(n) < 0.1] = np.nan
    code = rng.integers(0, 9, n).astype(float)
    code[rng.random(n) < 0.1] = np.nan  # a float column of whole numbers: 3.0 is the category "3"
    return pa.table({
        "amount": amount,
        "score": rng.normal(size=n),
        "city": pa.array(rng.choice(["paris", "rome", "oslo", "lima"], n)),
        "code": code,
        "ratio": rng.choice([0.5, 1.25, 3.0, 1e-7], n),
        "flag": pa.array(rng.random(n) < 0.3),
        "item": rng.integers(0, 10**6, n),
        "hist": pa.array([[int(x) for x in rng.integers(0, 20, rng.integers(0, 9))] for _ in range(n)]),
        "text": pa.array(["" if i % 7 == 0 else "|".join(rng.choice(words, rng.integers(1, 6))) for i in range(n)]),
        "text_b": pa.array([None if i % 5 == 0 else "|".join(rng.choice(words, rng.integers(1, 4))) for i in range(n)]),
        "vec": pa.array([[float(v) if rng.random() > 0.1 else None for v in rng.normal(size=3)] for _ in range(n)]),
        "y": rng.integers(0, 2, n),
    })


@pytest.fixture(scope="module")
def every_type_preprocessor():
    features = [
        FeatureSpec("amount", "numeric", log1p=True),
        FeatureSpec("score", "numeric", scale="minmax"),
        FeatureSpec("city", "categorical", min_count=2),
        FeatureSpec("code", "categorical"),
        FeatureSpec("ratio", "categorical"),
        FeatureSpec("flag", "categorical"),
        FeatureSpec("item", "categorical", hash_buckets=50),
        FeatureSpec("hist", "sequence", max_len=5),
        FeatureSpec("text", "sequence", max_len=4, char_ngrams=[2, 3], max_ngrams=6),
        FeatureSpec("text_b", "sequence", max_len=4, char_ngrams=[2, 3], max_ngrams=6, vocabulary="text"),
        FeatureSpec("vec", "dense"),
    ]
    return Preprocessor(features, [Task("y")]).fit(every_type(300, 0), "train")


def test_every_feature_type_equals_the_preprocessor(every_type_preprocessor):
    pre = every_type_preprocessor
    table = every_type(120, 1)
    data = table.to_pydict()
    data["city"][:3] = ["berlin", None, ""]
    data["text"][:2] = ["unseen|w1||w2", None]
    data["hist"][:2] = [None, [1, 2, None, 3, 4, 5, 6, 7]]
    got = assert_same(pre, pa.table(data))
    assert set(got) == {"numeric", "categorical", "seq_hist", "seq_text", "ngrams_text", "seq_text_b", "ngrams_text_b",
                        "dense_vec"}
    assert got["numeric"].shape == (120, 3)  # amount and its missing indicator, score


def test_char_ngrams_agree_with_polytask():
    for word in ["a", "ab", "hello", "naïve", "<x>"]:
        assert reference.char_ngrams(word, [2, 3, 4], 9) == polytask_char_ngrams(word, [2, 3, 4], 9)


def test_reference_needs_only_numpy_and_the_standard_library():
    source = Path(reference.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "hashlib", "json", "math", "re", "collections", "typing", "numpy"}, imported


@pytest.mark.parametrize(("column", "value", "message"), [
    ("amount", "lots", "column 'amount' must be numeric but row 0 holds 'lots'"),
    ("score", float("inf"), "numeric column 'score' holds inf at row 0"),
    ("vec", [1.0, 2.0], "dense column 'vec': row 0 has 2 values, expected shape [3]"),
])
def test_a_bad_value_is_one_error_naming_the_column_and_row(every_type_preprocessor, column, value, message):
    pre = ReferencePreprocessor(preprocess_spec(every_type_preprocessor))
    data = every_type(5, 2).to_pydict()
    data[column][0] = value
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        pre(data)


def test_a_missing_column_and_a_foreign_file_are_refused(every_type_preprocessor):
    pre = ReferencePreprocessor(preprocess_spec(every_type_preprocessor))
    data = every_type(5, 2).to_pydict()
    del data["city"]
    with pytest.raises(ValueError, match="missing column 'city'"):
        pre(data)
    with pytest.raises(ValueError, match="not a polytask preprocess.json"):
        ReferencePreprocessor({"format": "something else"})


def test_equal_keys_of_different_types_keep_their_own_text():
    spec = {"format": "polytask-preprocess", "version": 1,
            "inputs": [{"name": "categorical", "group": "categorical", "dtype": "int32", "shape": ["batch", 1]}],
            "features": [{"name": "c", "type": "categorical", "input": "categorical", "vocabulary": ["1", "true", "1.5"],
                          "first_id": 1, "unknown_id": 0}]}
    ids = ReferencePreprocessor(spec)({"c": [True, 1, 1.0, "1", None, float("nan"), 1.5, np.int64(1), "x"]})["categorical"]
    assert ids[:, 0].tolist() == [2, 1, 1, 1, 0, 0, 3, 1, 0]
