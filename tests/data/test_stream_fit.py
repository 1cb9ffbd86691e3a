"""Known answer: the streaming fit over several Parquet files and row groups gives the encoders
(``encoders.json``) the in-memory fit gives on the concatenated table: numeric and dense moments
to 1e-9 relative, vocabularies identical (``min_count``, tie order, character n-grams)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec
from polytask.data.stream_files import ParquetFiles
from polytask.data.stream_fit import fit_streaming
from polytask.data.stream_moments import Moments
from polytask.errors import DataError
from polytask.tasks import Task


def make_table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    big = 1e9 + rng.normal(0, 1, n)  # large mean, unit spread: a naive sum of squares loses it
    big[rng.random(n) < 0.1] = np.nan
    words = ["apple", "banana", "cherry", "date", "elder", "fig"]
    return pa.table({
        "big": pa.array(big, from_pandas=True),
        "income": rng.lognormal(3, 1, n),
        "city": rng.choice(["paris", "rome", "oslo", "lima", "kyiv", "bern"], n, p=[.3, .2, .2, .1, .1, .1]).tolist(),
        "device": rng.integers(0, 9, n),  # integer values, counted as integers
        "hist": ["|".join(rng.choice(words, rng.integers(0, 5))) for _ in range(n)],
        "vec": [rng.normal(5, 2, 3).tolist() for _ in range(n)],
        "click": rng.integers(0, 2, n),
        "genre": rng.choice(["x", "y", "z"], n).tolist(),
        "price": rng.normal(100, 20, n),
        "tie": [["b", "d", "a", "c"][i % 4] for i in range(n)],  # equal counts: ties broken by value
    })


def make_pre() -> Preprocessor:
    features = [
        FeatureSpec("big", "numeric"),
        FeatureSpec("income", "numeric", log1p=True, scale="minmax"),
        FeatureSpec("city", "categorical", min_count=220),
        FeatureSpec("tie", "categorical"),
        FeatureSpec("device", "categorical"),
        FeatureSpec("hist", "sequence", max_len=3, char_ngrams=[2, 3], min_count=2),
        FeatureSpec("vec", "dense", shape=[3]),
    ]
    tasks = [Task("click"), Task("genre", "multiclass"), Task("price", "regression")]
    return Preprocessor(features, tasks)


def close(a, b, path=""):
    """Equal JSON states, floats to 1e-9 relative."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def write_files(tmp_path, sizes=(700, 450, 1000), row_group=128):
    tables = [make_table(n, seed=i) for i, n in enumerate(sizes)]
    (tmp_path / "train").mkdir()
    for i, t in enumerate(tables):
        pq.write_table(t, tmp_path / "train" / f"part-{i}.parquet", row_group_size=row_group)
    return pa.concat_tables(tables)


def test_streaming_fit_equals_in_memory_fit(tmp_path):
    whole = write_files(tmp_path)
    files = ParquetFiles(tmp_path / "train")
    assert len(files.units) > 10  # several files, several row groups each
    streamed = fit_streaming(make_pre(), files, read_rows=100).to_dict()
    memory = make_pre().fit(whole, "train").to_dict()
    close(memory, streamed)
    city = next(f["state"]["vocab"] for f in streamed["features"] if f["spec"]["name"] == "city")
    assert 0 < len(city) < 6  # min_count dropped the rare cities
    tie = next(f["state"]["vocab"] for f in streamed["features"] if f["spec"]["name"] == "tie")
    assert tie == ["b", "d", "a", "c"]  # b, d: 538 each; a, c: 537 each; ties by value
    assert next(f["state"]["ngrams"] for f in streamed["features"] if f["spec"]["name"] == "hist")


def test_moments_merge_is_exact_for_a_large_mean():
    rng = np.random.default_rng(0)
    x = 1e9 + rng.normal(0, 1, 10_000)
    m = Moments()
    for part in np.array_split(x, 37):
        m.add(part)
    assert float(m.mean) == pytest.approx(x.mean(), rel=1e-12)
    assert float(m.std) == pytest.approx(x.std(), rel=1e-9)
    assert (float(m.min), float(m.max)) == (x.min(), x.max())


def test_a_file_missing_a_column_is_named(tmp_path):
    write_files(tmp_path, sizes=(50, 50))
    pq.write_table(make_table(30, 5).drop_columns(["city"]), tmp_path / "train" / "part-9.parquet")
    with pytest.raises(DataError, match=r"part-9\.parquet: missing column\(s\) 'city'"):
        fit_streaming(make_pre(), ParquetFiles(tmp_path / "train"))


def test_image_features_are_refused_for_streaming(tmp_path):
    pq.write_table(pa.table({"img": ["a.png"] * 4, "click": [0, 1, 0, 1]}), tmp_path / "a.parquet")
    pre = Preprocessor([FeatureSpec("img", "image")], [Task("click")])
    with pytest.raises(DataError, match="image feature 'img' cannot be fitted in a streaming pass"):
        fit_streaming(pre, ParquetFiles(tmp_path / "a.parquet"))
