"""AliExpress search logs with click and conversion labels (the MTReclib / AITM CSV format).

Format (easezyc/Multitask-Recommendation-Library; the same files as torch-rechub's
``examples/ranking/data/aliexpress``): CSV with a header of 82 columns,
``search_id, categorical_1 ... categorical_16, numerical_1 ... numerical_63, click, conversion``.

* ``search_id``: the search an impression belongs to (the key joining the raw user and item
  files); kept in the tables, not a feature (MTReclib drops it too), and used to keep a search's
  impressions in one split;
* ``categorical_1..16``: label-encoded integers, read as int64 -> ``categorical`` features;
* ``numerical_1..63``: floats, read as float64 -> ``numeric`` features (a few hold only integers
  in the sample; they are still numeric statistics);
* ``click``, ``conversion``: 0/1 labels, cast to int8.

Tasks (the ESMM triple, :mod:`polytask.data.datasets._ctcvr`): ``ctr`` (click, all impressions),
``cvr`` (conversion where ``click == 1``) and ``ctcvr`` (``ctcvr = click AND conversion``, a
derived int8 column, over all impressions). In AliExpress a conversion is only recorded after a
click: MTReclib's ``data/preprocess.py`` builds both labels from one raw label in {0, 1, 2}
(0 -> no click, 1 -> click only, 2 -> click and conversion), so ``conversion == 1`` implies
``click == 1`` by construction, and in the sample every conversion has a click (train 2 of 2, test
2 of 2): ``ctcvr`` equals ``conversion``. The notes report the count of conversions without a
click for whatever files are read.

Files: a folder with ``aliexpress_train*.csv`` and ``aliexpress_test*.csv`` (the torch-rechub
names; ``.csv.gz`` too; the exact names ``aliexpress_{train,test}.csv`` win over others), or a
country folder ``AliExpress_<CC>/{train,test}.csv`` as MTReclib's preprocessing writes them (NL,
ES, FR, US), or a folder holding several country folders together with ``country="NL"``, or one
CSV file.

Splits: the test file is the test split; validation is carved out of the train file by a seeded
random split by ``search_id`` (``validation_fraction`` of the searches, so about that fraction of
rows, ``split_seed``); with a single file the test split is carved the same way
(``test_fraction``). MTReclib itself has no validation split: it early-stops on the test AUC
(patience 2) and reports the test AUC of that epoch, so its published numbers are selected on test
and validation numbers here have no published counterpart.

The sample in ``<data dir>/aliexpress_samples`` (100 train + 20 test rows, click rate 60 %) is for
loader tests only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from polytask.data.datasets._ctcvr import (
    check_fraction,
    check_max_rows,
    esmm_tasks,
    label_summary,
    read_csv,
    read_header,
    resolve_path,
    split_indices,
    with_ctcvr,
)
from polytask.data.datasets.base import DatasetBundle
from polytask.data.paths import DataNotFoundError
from polytask.errors import DataError
from polytask.registry import DATASETS

PUBLISHED_AT = "https://tianchi.aliyun.com/dataset/74690"
PAPER = "AliExpress search logs as used by MTReclib (Zhu et al.) and AITM (Xi et al., KDD 2021)"
DEFAULT_PATH = "aliexpress_samples"

ID = "search_id"
CATEGORICAL: tuple[str, ...] = tuple(f"categorical_{i}" for i in range(1, 17))
NUMERIC: tuple[str, ...] = tuple(f"numerical_{i}" for i in range(1, 64))
LABELS: tuple[str, str] = ("click", "conversion")
COLUMNS: tuple[str, ...] = (ID, *CATEGORICAL, *NUMERIC, *LABELS)


def _pick(folder: Path, stems: tuple[str, ...], split: str) -> Path | None:
    """The file for ``split`` in ``folder``: exact names first, then ``<stem>*.csv[.gz]``."""
    for stem in stems:
        for suffix in (".csv", ".csv.gz"):
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    matches = sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.name.lower().endswith((".csv", ".csv.gz")) and p.name.startswith(stems[0])
    )  # fmt: skip
    if len(matches) > 1:
        raise DataError(
            f"{folder}: several files for the {split} split ({', '.join(p.name for p in matches)}); "
            "pass path=<one file> or keep one of them in the folder"
        )
    return matches[0] if matches else None


def _locate(target: Path, country: str | None) -> tuple[Path | None, Path | None, str]:
    """(train file, test file or None, description) for a file or folder."""
    if target.is_file():
        return target, None, f"one file {target.name}"
    if country is not None:
        name = country if country.lower().startswith("aliexpress_") else f"AliExpress_{country.upper()}"
        sub = target / name
        if not sub.is_dir():
            raise DataNotFoundError(f"{target} holds no country folder {name}/ (country={country!r})")
        target = sub
    train = _pick(target, ("aliexpress_train",), "train")
    if train is not None:
        return train, _pick(target, ("aliexpress_test",), "test"), "torch-rechub file names"
    train = _pick(target, ("train",), "train")
    if train is not None:
        return train, _pick(target, ("test",), "test"), f"MTReclib country folder {target.name}"
    countries = sorted(p.name for p in target.iterdir() if p.is_dir() and p.name.lower().startswith("aliexpress_"))
    if len(countries) == 1:
        return _locate(target / countries[0], None)
    if countries:
        raise DataError(f"{target} holds several country folders ({', '.join(countries)}): pass country='NL' (or another)")
    raise DataNotFoundError(
        f"{target} holds no AliExpress files: expected aliexpress_train*.csv and aliexpress_test*.csv, or "
        f"train.csv and test.csv (a country folder such as AliExpress_NL/). Published at {PUBLISHED_AT}."
    )


def read_aliexpress(path: Path, max_rows: int | None = None) -> pa.Table:
    """One AliExpress CSV: the 82 columns checked (a missing one is a DataError naming the file and
    the column), categorical as int64, numerical as float64, labels checked 0/1 and cast to int8,
    plus the derived ``ctcvr``."""
    header = read_header(path)
    for column in COLUMNS:
        if column not in header:
            raise DataError(f"{path}: required column {column!r} is missing (AliExpress header: search_id, "
                            "categorical_1..16, numerical_1..63, click, conversion)")
    types = {ID: pa.int64()} | {c: pa.int64() for c in CATEGORICAL} | {c: pa.float64() for c in (*NUMERIC, *LABELS)}
    try:
        table = read_csv(
            path,
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(COLUMNS)),
            max_rows=max_rows,
        )
    except DataError as err:
        m = re.search(r"CSV column #(\d+)", str(err))
        if m and int(m.group(1)) < len(header):
            raise DataError(f"{path}: column {header[int(m.group(1))]!r} has a value of the wrong type: {err}") from None
        raise
    table, _ = with_ctcvr(table.select(list(COLUMNS)), path, click="click", conversion="conversion")
    return table


@DATASETS.register("aliexpress")
def aliexpress(
    data_dir: str | os.PathLike | None = None,
    *,
    path: str | None = None,
    country: str | None = None,
    split_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    tasks: list[str] | None = None,
    max_rows: int | None = None,
) -> DatasetBundle:
    """AliExpress search logs (MTReclib CSV format): ctr, cvr (clicked space), ctcvr.

    ``path``: a folder or one CSV file (default ``<data dir>/aliexpress_samples``); ``country``
    picks ``AliExpress_<country>/`` inside it. Test = the test file; validation = a seeded part
    of train by ``search_id`` (``validation_fraction`` of the searches; ``split_seed``); with one
    file also the test split (``test_fraction``). ``tasks``: a subset of ``["ctr", "cvr",
    "ctcvr"]``. ``max_rows``: read only the first ``max_rows`` rows of each file.
    """
    check_fraction("validation_fraction", validation_fraction)
    check_fraction("test_fraction", test_fraction)
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            "validation_fraction + test_fraction must be < 1 (the rest is train), "
            f"got {validation_fraction!r} + {test_fraction!r}"
        )
    check_max_rows(max_rows)
    if country is not None and not country.strip():
        raise ValueError("country must be a country code such as 'NL' (or None)")
    task_dicts = esmm_tasks(tasks, click="click", conversion="conversion")
    target = resolve_path(path, data_dir, DEFAULT_PATH, what="aliexpress", published_at=PUBLISHED_AT)
    train_path, test_path, layout = _locate(target, country)
    assert train_path is not None
    train = read_aliexpress(train_path, max_rows)
    test = read_aliexpress(test_path, max_rows) if test_path is not None else None

    fractions = [validation_fraction] + ([test_fraction] if test is None else [])
    groups = train.column(ID).to_numpy(zero_copy_only=False)
    index = split_indices(train.num_rows, fractions, split_seed, groups=groups)
    if any(len(ix) == 0 for ix in index):
        raise DataError(
            f"{train_path}: {train.num_rows} rows ({len(np.unique(groups))} searches) are too few for a seeded split "
            f"by search_id with fractions {fractions} (a part would be empty)"
        )
    validation = train.take(pa.array(index[1]))
    sources = {
        "train": f"{train_path} (rest after the seeded split by search_id, split_seed={split_seed})",
        "validation": f"{train_path} (seeded {validation_fraction:g} of the searches, split_seed={split_seed})",
    }
    if test is None:
        test = train.take(pa.array(index[2]))
        sources["test"] = f"{train_path} (seeded {test_fraction:g} of the searches, split_seed={split_seed})"
        protocol = (
            f"one file: train/validation/test = seeded split by search_id (fractions "
            f"{1 - validation_fraction - test_fraction:g}/{validation_fraction:g}/{test_fraction:g}, split_seed={split_seed})"
        )
    else:
        sources["test"] = str(test_path)
        protocol = (
            f"test = {test_path.name}; validation = seeded {validation_fraction:g} of the train file's searches "
            f"(split by search_id, split_seed={split_seed}), train = the rest"
        )
    train = train.take(pa.array(index[0]))
    splits = {"train": train, "validation": validation, "test": test}
    orphans = {
        s: int(((t.column("conversion").to_numpy() == 1) & (t.column("click").to_numpy() == 0)).sum())
        for s, t in splits.items()
    }
    counts = "; ".join(f"{s}: {label_summary(t, 'click', 'conversion')}" for s, t in splits.items())
    small = "sample" in str(train_path)
    notes = (
        f"AliExpress ({PAPER}) from {train_path.parent} ({layout}). Tasks: "
        + ", ".join(t["name"] for t in task_dicts)
        + " (ctr: click over all impressions; cvr: conversion where click == 1; ctcvr: click AND conversion, "
        f"derived column, over all impressions). Inputs: {len(CATEGORICAL)} categorical + {len(NUMERIC)} numeric "
        f"columns; search_id kept, not a feature. Splits: {protocol}. {counts}."
        + (
            " Every conversion has a click (conversion implies click), so ctcvr == conversion."
            if not any(orphans.values())
            else f" Conversions without a click per split: {orphans} (cvr ignores them; ctcvr counts them as 0)."
        )
        + (f" max_rows={max_rows}: only the first rows of each file were read." if max_rows is not None else "")
        + (" Tiny sample files (click rate far above the real logs): loader tests only, not benchmark numbers." if small else "")
    )
    sources.update(published_at=PUBLISHED_AT, paper=PAPER)
    return DatasetBundle(
        train=train,
        validation=validation,
        test=test,
        features={"numeric": list(NUMERIC), "categorical": list(CATEGORICAL)},
        tasks=task_dicts,
        notes=notes,
        sources=sources,
    )
