"""Tests of the Census-Income (KDD) loader (MMoE, Ma et al., KDD 2018, Sec. 6.3).

These read the real file from the data directory (``$POLYTASK_DATA_DIR`` or ``../shared/data``)
and fail, not skip, when it cannot be found.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from polytask.data.datasets.base import DatasetBundle
from polytask.data.datasets.census_income import COLUMNS, census_income
from polytask.data.paths import DataNotFoundError, dataset_dir

N_ROWS = 99_762
INCOME_POSITIVE = 6_186
NEVER_MARRIED = 43_143
NUMERIC = ["age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "num_emp", "weeks_worked"]
NOT_INPUTS = {"instance_weight", "education", "marital_stat", "income_50k"}
COLLEGE = ("Associates", "Bachelors", "Masters", "Prof school", "Doctorate")


@pytest.fixture(scope="module")
def raw_lines() -> list[str]:
    """The real test file's lines, read independently of the loader (fails if data is absent)."""
    folder = dataset_dir("census_income_kdd")
    with gzip.open(folder / "census-income.test.gz", "rt") as fh:
        return fh.read().splitlines()


@pytest.fixture(scope="module")
def group1() -> DatasetBundle:
    return census_income(group=1, split_seed=0)


def _splits(b: DatasetBundle) -> list[pa.Table]:
    return [t for t in (b.train, b.validation, b.test) if t is not None]


def _row_counter(tables: list[pa.Table], columns: list[str]) -> Counter:
    out: Counter = Counter()
    for t in tables:
        out.update(zip(*(t.column(c).to_pylist() for c in columns)))
    return out


def test_row_count_and_label_counts(group1: DatasetBundle) -> None:
    tables = _splits(group1)
    assert sum(t.num_rows for t in tables) == N_ROWS
    assert sum(pc.sum(t.column("income")).as_py() for t in tables) == INCOME_POSITIVE
    assert sum(pc.sum(t.column("never_married")).as_py() for t in tables) == NEVER_MARRIED
    for t in tables:
        assert t.schema.field("income").type == pa.int8()
        assert t.schema.field("never_married").type == pa.int8()


def test_default_split_is_50_25_25_of_the_test_file(group1: DatasetBundle) -> None:
    sizes = [t.num_rows for t in _splits(group1)]
    assert sizes == [49_882, 24_940, 24_940]
    assert "NOT the paper's protocol" in group1.notes
    assert "split_seed=0" in group1.notes


def test_features_and_dropped_columns(group1: DatasetBundle) -> None:
    f = group1.features
    assert set(f) == {"numeric", "categorical"}
    assert f["numeric"] == NUMERIC
    assert len(f["categorical"]) == 31
    inputs = set(f["numeric"]) | set(f["categorical"])
    assert len(inputs) == 38
    assert not inputs & NOT_INPUTS
    assert inputs | NOT_INPUTS == set(COLUMNS)
    for t in _splits(group1):
        assert not set(t.column_names) & NOT_INPUTS
        assert set(t.column_names) == inputs | {"income", "never_married"}
        for c in f["numeric"]:
            assert t.schema.field(c).type == pa.float64()
        for c in f["categorical"]:
            assert t.schema.field(c).type == pa.string()


def _parse(lines: list[str]) -> tuple[Counter, int]:
    """Independent parse: Counter of (numerics as float, categoricals with '?' -> None, income,
    never_married) row tuples, and the number of rows with education >= college."""
    idx = {c: i for i, c in enumerate(COLUMNS)}
    cat = [c for c in COLUMNS if c not in NOT_INPUTS and c not in NUMERIC]
    rows: Counter = Counter()
    college = 0
    for line in lines:
        v = [s.strip() for s in line.split(",")]
        assert len(v) == 42
        college += v[idx["education"]].startswith(COLLEGE)
        rows[
            (
                *(float(v[idx[c]]) for c in NUMERIC),
                *(None if v[idx[c]] == "?" else v[idx[c]] for c in cat),
                int(v[idx["income_50k"]] == "50000+."),
                int(v[idx["marital_stat"]] == "Never married"),
            )
        ] += 1
    return rows, college


@pytest.fixture(scope="module")
def expected(raw_lines: list[str]) -> tuple[Counter, int]:
    return _parse(raw_lines)


def _cols(b: DatasetBundle) -> list[str]:
    return [*b.features["numeric"], *b.features["categorical"], "income", "never_married"]


def test_matches_an_independent_parse(group1: DatasetBundle, expected: tuple[Counter, int]) -> None:
    """The splits together are exactly the file's rows (as a multiset): values stripped, '?' ->
    None, numerics as floats, labels as defined. Equal multisets + sizes summing to the file's
    row count means the splits partition the file (disjoint, nothing lost or duplicated)."""
    rows, college = expected
    assert group1.features["categorical"] == [c for c in COLUMNS if c not in NOT_INPUTS and c not in NUMERIC]
    assert _row_counter(_splits(group1), _cols(group1)) == rows
    # education >= college, on group 2
    g2 = census_income(group=2, split_seed=0)
    assert sum(pc.sum(t.column("education_college")).as_py() for t in _splits(g2)) == college == 19_456


def test_splits_disjoint_and_deterministic_per_split_seed(group1: DatasetBundle) -> None:
    np.random.seed(12345)  # a global (training) seed must not affect the split
    again = census_income(group=1, split_seed=0)
    for a, b in zip(_splits(group1), _splits(again)):
        assert a.equals(b)
    other = census_income(group=1, split_seed=1)
    assert [t.num_rows for t in _splits(other)] == [49_882, 24_940, 24_940]
    assert not other.train.equals(group1.train)
    assert "split_seed=1" in other.notes


def test_max_rows_disjoint_splits(expected: tuple[Counter, int]) -> None:
    # The three splits of a max_rows subset taken together are a sub-multiset of the file's rows
    # (so no row is in two splits), with the requested sizes, reproducibly.
    b = census_income(max_rows=2_000, split_seed=3)
    assert [t.num_rows for t in _splits(b)] == [1_000, 500, 500]
    union = _row_counter(_splits(b), _cols(b))
    assert sum(union.values()) == 2_000
    assert not union - expected[0]
    b2 = census_income(max_rows=2_000, split_seed=3)
    assert all(x.equals(y) for x, y in zip(_splits(b), _splits(b2)))
    b3 = census_income(max_rows=2_000, split_seed=4)
    assert not b3.train.equals(b.train)


def test_group_task_lists() -> None:
    g2 = census_income(group=2, max_rows=1_000)
    assert g2.tasks == [
        {"name": "education_college", "kind": "binary", "label": "education_college"},
        {"name": "never_married", "kind": "binary", "label": "never_married"},
    ]
    assert {"education_college", "never_married"} <= set(g2.train.column_names)
    assert "income" not in g2.train.column_names
    g3 = census_income(group=3, max_rows=1_000)
    assert [t["name"] for t in g3.tasks] == ["income", "education_college", "never_married"]
    assert all(t["kind"] == "binary" and t["label"] == t["name"] for t in g3.tasks)
    for name in ("income", "education_college", "never_married"):
        assert g3.train.schema.field(name).type == pa.int8()
    # same split_seed -> the same rows whatever the group
    g1 = census_income(group=1, max_rows=1_000)
    assert g1.train.select(g1.features["numeric"]).equals(g3.train.select(g3.features["numeric"]))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"group": 0}, "group"),
        ({"group": 4}, "group"),
        ({"group": "1"}, "group"),
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"validation_fraction": 0.5, "test_fraction": 0.5}, "validation_fraction"),
        ({"max_rows": 0}, "max_rows"),
    ],
)
def test_invalid_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        census_income(**kwargs)


# --- small copies in tmp_path -------------------------------------------------------------


def _write(folder: Path, name: str, lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n").encode()
    if name.endswith(".gz"):
        data = gzip.compress(data)
    (folder / name).write_bytes(data)


@pytest.mark.parametrize("column", ["weeks_worked", "marital_stat", "country_self"])
def test_missing_column_names_file_and_column(tmp_path: Path, raw_lines: list[str], column: str) -> None:
    folder = tmp_path / "census_income_kdd"
    folder.mkdir()
    drop = COLUMNS.index(column)
    lines = [", ".join(v for i, v in enumerate(line.split(", ")) if i != drop) for line in raw_lines[:200]]
    _write(folder, "census-income.test.gz", lines)
    (folder / "columns.txt").write_text("\n".join(c for c in COLUMNS if c != column) + "\n")
    with pytest.raises(ValueError, match=column) as info:
        census_income(tmp_path)
    assert "census-income.test.gz" in str(info.value)


def test_wrong_field_count_without_columns_txt(tmp_path: Path, raw_lines: list[str]) -> None:
    folder = tmp_path / "census_income_kdd"
    folder.mkdir()
    _write(folder, "census-income.test", [line.rsplit(", ", 1)[0] for line in raw_lines[:50]])
    with pytest.raises(ValueError, match="census-income.test"):
        census_income(tmp_path)


def test_paper_protocol_when_train_file_present(tmp_path: Path, raw_lines: list[str]) -> None:
    folder = tmp_path / "census_income_kdd"
    folder.mkdir()
    _write(folder, "census-income.test", raw_lines[:400])  # uncompressed test file
    _write(folder, "census-income.data.gz", raw_lines[400:1000])  # stands in for the train file
    b = census_income(tmp_path, split_seed=7)
    assert (b.train.num_rows, b.validation.num_rows, b.test.num_rows) == (600, 200, 200)
    assert "Paper protocol" in b.notes and "census-income.data.gz" in b.notes
    assert b.sources["train"].endswith("census-income.data.gz")
    cols = _cols(b)
    # train = the train file; validation + test = the test file, split 1:1
    assert _row_counter([b.train], cols) == _parse(raw_lines[400:1000])[0]
    assert _row_counter([b.validation, b.test], cols) == _parse(raw_lines[:400])[0]
    again = census_income(tmp_path, split_seed=7)
    assert again.validation.equals(b.validation) and again.train.equals(b.train)
    assert not census_income(tmp_path, split_seed=8).validation.equals(b.validation)
    # max_rows applies to each file
    m = census_income(tmp_path, max_rows=100)
    assert (m.train.num_rows, m.validation.num_rows, m.test.num_rows) == (100, 50, 50)


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="census_income_kdd"):
        census_income(tmp_path)
    (tmp_path / "census_income_kdd").mkdir()
    with pytest.raises(DataNotFoundError, match="census-income.test"):
        census_income(tmp_path)


def test_registered() -> None:
    from polytask.registry import DATASETS

    assert DATASETS.get("census_income") is census_income
