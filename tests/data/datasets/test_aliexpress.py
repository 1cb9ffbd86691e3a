"""Tests of the AliExpress loader (MTReclib / AITM CSV format).

These read the real sample files from the data directory (``$POLYTASK_DATA_DIR`` or
``../shared/data``, folder ``aliexpress_samples``) and fail, not skip, when they cannot be found.
Counts are those of ``aliexpress_samples/README.md``.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import polytask
from polytask.data.datasets.aliexpress import CATEGORICAL, COLUMNS, NUMERIC, aliexpress
from polytask.data.datasets.base import DatasetBundle
from polytask.data.paths import DataNotFoundError, dataset_dir
from polytask.errors import ConfigError, DataError
from polytask.registry import DATASETS

TRAIN = "aliexpress_train_sample.csv"
TEST = "aliexpress_test_sample.csv"


@pytest.fixture(scope="module")
def folder() -> Path:
    return dataset_dir("aliexpress_samples")


@pytest.fixture(scope="module")
def bundle() -> DatasetBundle:
    return aliexpress(validation_fraction=0.3)


def _sum(table: pa.Table, column: str) -> int:
    return int(pc.sum(table.column(column)).as_py())


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_counts_match_the_readme(bundle: DatasetBundle) -> None:
    train_file = pa.concat_tables([bundle.train, bundle.validation])
    assert (train_file.num_rows, _sum(train_file, "click"), _sum(train_file, "conversion")) == (100, 60, 2)
    assert (bundle.test.num_rows, _sum(bundle.test, "click"), _sum(bundle.test, "conversion")) == (20, 10, 2)
    assert "test = aliexpress_test_sample.csv" in bundle.notes and "loader tests only" in bundle.notes


def test_values_match_the_file(bundle: DatasetBundle, folder: Path) -> None:
    rows = _rows(folder / TEST)
    for column in ("search_id", *CATEGORICAL, "click", "conversion"):
        assert bundle.test.column(column).to_pylist() == [int(r[column]) for r in rows], column
    for column in NUMERIC:
        np.testing.assert_array_equal(bundle.test.column(column).to_numpy(), [float(r[column]) for r in rows])
    # train + validation hold exactly the train file's rows
    rows = _rows(folder / TRAIN)
    both = pa.concat_tables([bundle.train, bundle.validation])
    got = sorted(zip(both.column("search_id").to_pylist(), both.column("numerical_30").to_pylist(), both.column("click").to_pylist()))
    want = sorted((int(r["search_id"]), float(r["numerical_30"]), int(r["click"])) for r in rows)
    assert got == want


def test_features_types_and_tasks(bundle: DatasetBundle) -> None:
    assert bundle.features == {"numeric": list(NUMERIC), "categorical": list(CATEGORICAL)}
    assert len(CATEGORICAL) == 16 and len(NUMERIC) == 63 and len(COLUMNS) == 82
    assert bundle.tasks == [
        {"name": "ctr", "kind": "binary", "label": "click"},
        {"name": "cvr", "kind": "binary", "label": "conversion", "where": "click == 1"},
        {"name": "ctcvr", "kind": "binary", "label": "ctcvr"},
    ]
    for t in (bundle.train, bundle.validation, bundle.test):
        assert t.column_names == [*COLUMNS, "ctcvr"]
        assert all(t.schema.field(c).type == pa.int64() for c in ("search_id", *CATEGORICAL))
        assert all(t.schema.field(c).type == pa.float64() for c in NUMERIC)  # numerical_58..60 hold integers in the file
        assert all(t.schema.field(c).type == pa.int8() for c in ("click", "conversion", "ctcvr"))
    assert "search_id" not in bundle.features["categorical"] + bundle.features["numeric"]


def test_conversion_implies_click_so_ctcvr_equals_conversion(bundle: DatasetBundle) -> None:
    for t in (bundle.train, bundle.validation, bundle.test):
        click, conversion = t.column("click").to_numpy(), t.column("conversion").to_numpy()
        assert not ((conversion == 1) & (click == 0)).any()
        np.testing.assert_array_equal(t.column("ctcvr").to_numpy(), conversion)
        np.testing.assert_array_equal(t.column("ctcvr").to_numpy(), click & conversion)
    assert "conversion implies click" in bundle.notes


def test_validation_is_a_seeded_split_by_search_id(bundle: DatasetBundle) -> None:
    train_ids = set(bundle.train.column("search_id").to_pylist())
    val_ids = set(bundle.validation.column("search_id").to_pylist())
    assert not train_ids & val_ids and len(train_ids | val_ids) == 41  # 41 searches in the train file
    assert len(val_ids) == round(0.3 * 41)
    again = aliexpress(validation_fraction=0.3)
    other = aliexpress(validation_fraction=0.3, split_seed=5)
    assert again.validation.equals(bundle.validation) and again.train.equals(bundle.train)
    assert set(other.validation.column("search_id").to_pylist()) != val_ids
    assert "split_seed=0" in bundle.sources["validation"]


def test_single_file_carves_test_as_well(folder: Path) -> None:
    b = aliexpress(path=str(folder / TRAIN), validation_fraction=0.2, test_fraction=0.2)
    parts = [set(t.column("search_id").to_pylist()) for t in (b.train, b.validation, b.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(t.num_rows for t in (b.train, b.validation, b.test)) == 100
    assert "one file" in b.notes


def test_country_folders(tmp_path: Path, folder: Path) -> None:
    for cc in ("NL", "ES"):
        (tmp_path / f"AliExpress_{cc}").mkdir()
        shutil.copy(folder / TRAIN, tmp_path / f"AliExpress_{cc}" / "train.csv")
        shutil.copy(folder / TEST, tmp_path / f"AliExpress_{cc}" / "test.csv")
    b = aliexpress(path=str(tmp_path), country="NL", validation_fraction=0.3)
    assert b.sources["test"] == str(tmp_path / "AliExpress_NL" / "test.csv") and b.test.num_rows == 20
    assert "MTReclib country folder AliExpress_NL" in b.notes
    b = aliexpress(path=str(tmp_path / "AliExpress_ES"), validation_fraction=0.3)
    assert b.sources["test"] == str(tmp_path / "AliExpress_ES" / "test.csv")
    with pytest.raises(DataError, match="several country folders"):
        aliexpress(path=str(tmp_path))
    with pytest.raises(DataNotFoundError, match="AliExpress_US"):
        aliexpress(path=str(tmp_path), country="US")
    shutil.rmtree(tmp_path / "AliExpress_ES")
    b = aliexpress(path=str(tmp_path), validation_fraction=0.3)  # one country folder: used without country=
    assert b.sources["test"] == str(tmp_path / "AliExpress_NL" / "test.csv")


@pytest.mark.parametrize("column", ["conversion", "categorical_7", "numerical_63", "search_id"])
def test_missing_column_names_the_file_and_the_column(tmp_path: Path, folder: Path, column: str) -> None:
    shutil.copy(folder / TRAIN, tmp_path / TRAIN)
    rows = _rows(folder / TEST)
    target = tmp_path / TEST
    with open(target, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[c for c in rows[0] if c != column])
        w.writeheader()
        w.writerows({k: v for k, v in r.items() if k != column} for r in rows)
    with pytest.raises(DataError) as err:
        aliexpress(path=str(tmp_path))
    assert str(target) in str(err.value) and repr(column) in str(err.value)


def test_bad_label_names_the_file_and_column(tmp_path: Path, folder: Path) -> None:
    rows = _rows(folder / TRAIN)
    target = tmp_path / "aliexpress_train.csv"
    with open(target, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "click": ""} if i == 7 else r for i, r in enumerate(rows))
    shutil.copy(folder / TEST, tmp_path / "aliexpress_test.csv")
    with pytest.raises(DataError, match=r"aliexpress_train\.csv: label column 'click' must hold 0 or 1, row 7"):
        aliexpress(path=str(tmp_path))


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="holds no AliExpress files"):
        aliexpress(path=str(tmp_path))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"validation_fraction": 0.0}, "validation_fraction"), ({"test_fraction": 1.5}, "test_fraction"),
     ({"max_rows": -1}, "max_rows"), ({"tasks": []}, "tasks"), ({"country": " "}, "country")],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        aliexpress(**kwargs)


def test_registered_and_checked_from_the_signature() -> None:
    assert DATASETS.get("aliexpress") is aliexpress
    with pytest.raises(ConfigError, match="data.params.validation_fraction"):
        polytask.fit(dataset="aliexpress", dataset_params={"validation_fraction": "a lot"}, model="shared_bottom", epochs=1)


def test_fit_end_to_end_masks_unclicked_rows_for_cvr(bundle: DatasetBundle) -> None:
    run = polytask.fit(dataset="aliexpress", dataset_params={"validation_fraction": 0.3}, model="shared_bottom",
                       epochs=1, batch_size=32, progress=False)
    for split in ("validation", "test"):
        table = getattr(bundle, split)
        m = run.metrics[split]
        assert m["ctr"]["count"] == m["ctcvr"]["count"] == table.num_rows
        assert m["cvr"]["count"] == _sum(table, "click") < table.num_rows
        assert np.isfinite(m["loss"])
