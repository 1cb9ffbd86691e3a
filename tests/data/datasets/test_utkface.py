"""UTKFace crop_part1: labels from the file names, the JPEG bytes of the named file, the seeded
70/10/20 split (disjoint, covering every image), the two rows with age only masked for gender and
race, and ``max_rows``. Reads the real archive from the data directory."""

from __future__ import annotations

import io

import numpy as np
import pytest

from polytask.data.datasets.utkface import read_labels, split_rows, utkface
from polytask.data.paths import dataset_dir
from polytask.errors import DataError
from polytask.registry import DATASETS


@pytest.fixture(scope="module")
def bundle():
    return utkface(max_rows=None, image_size=32)


def test_registered_with_three_tasks(bundle):
    assert DATASETS.get("utkface") is utkface
    assert bundle.tasks[1]["threshold"] == 0.5
    assert [(t["name"], t["kind"]) for t in bundle.tasks] == [("age", "regression"), ("gender", "binary"),
                                                              ("race", "multiclass")]
    (image,) = bundle.features["image"]
    assert image == {"name": "image", "size": [32, 32], "channels": 3, "flip": True}


def test_split_is_seeded_disjoint_and_complete(bundle):
    files = [set(t["file"].to_pylist()) for t in (bundle.train, bundle.validation, bundle.test)]
    assert [len(f) for f in files] == [6846, 978, 1956]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert len(files[0] | files[1] | files[2]) == 9780
    again = utkface(seed=0, max_rows=50)
    assert again.train["file"].to_pylist() == bundle.train["file"].to_pylist()[:50]
    other = utkface(seed=1, max_rows=50)
    assert other.train["file"].to_pylist() != again.train["file"].to_pylist()
    assert (again.validation.num_rows, again.test.num_rows) == (8, 15)  # ceil(978 * 50 / 6846), ceil(1956 * 50 / 6846)
    a, b, c = split_rows(10, 3)
    assert sorted(np.concatenate([a, b, c]).tolist()) == list(range(10)) and (len(a), len(b), len(c)) == (7, 1, 2)


def test_labels_come_from_the_file_names_and_bytes_are_the_named_jpeg(bundle):
    from PIL import Image

    for table in (bundle.train.slice(0, 20), bundle.test.slice(0, 20)):
        for row in table.to_pylist():
            age, gender, race = row["file"].split("_")[:3]
            assert (row["age"], row["gender"], row["race"]) == (float(age), int(gender), int(race))
            with Image.open(io.BytesIO(row["image"])) as im:
                assert im.format == "JPEG" and im.size == (200, 200)


def test_rows_with_age_only_mask_gender_and_race(bundle):
    rows = [r for t in (bundle.train, bundle.validation, bundle.test) for r in
            t.select(["file", "age", "gender", "race"]).to_pylist() if r["gender"] is None]
    assert len(rows) == 2
    assert all(r["race"] is None and r["age"] == 61.0 and r["file"].count("_") == 2 for r in rows)


def test_bad_label_names_the_file_and_row(tmp_path):
    src = dataset_dir("utkface_crop_part1") / "labels.csv"
    lines = src.read_text().splitlines()
    lines[3] = lines[3].replace(",1,2,", ",1,7,", 1)  # race 7 on data row 2
    bad = tmp_path / "labels.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"labels.csv: row 2: race 7.0 is out of range"):
        read_labels(bad)
