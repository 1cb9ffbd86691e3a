"""Ali-CCP in torch-rechub's CSV format.

**torch-rechub CSV** (``format="rechub"``; datawhalechina/torch-rechub, ``examples/ranking/data/
ali-ccp``): files ``ali_ccp_train*.csv``, ``ali_ccp_val*.csv``, ``ali_ccp_test*.csv`` (``.gz``
too), with a header of 33 columns: ``click, purchase``, 23 label-encoded integer field columns
(:data:`RECHUB_CATEGORICAL`, read as int64 -> categorical features) and 8 float statistics
``D109_14 ... D853`` (:data:`RECHUB_NUMERIC` -> numeric features). Other columns are dropped.
The full files of that preprocessing are named ``ali_ccp_{train,val,test}.csv``; when a folder
holds several matches for a split, the exact name is preferred.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from polytask.data.datasets._ctcvr import read_csv, read_header
from polytask.data.datasets.ali_ccp_formats.shared import LABELS, csv_files
from polytask.errors import DataError

#: torch-rechub's label-encoded field columns (header order).
RECHUB_CATEGORICAL: tuple[str, ...] = (
    "101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "210", "216",
    "508", "509", "702", "853", "301", "109_14", "110_14", "127_14", "150_14",
)  # fmt: skip
#: torch-rechub's float statistics columns.
RECHUB_NUMERIC: tuple[str, ...] = ("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853")
RECHUB_COLUMNS: tuple[str, ...] = (*LABELS, *RECHUB_CATEGORICAL, *RECHUB_NUMERIC)
RECHUB_SPLITS = {"train": "train", "validation": "val", "test": "test"}
COLUMN_NO = re.compile(r"CSV column #(\d+)")


def looks_rechub(line: str) -> bool:
    """A CSV header naming the labels."""
    names = {n.strip().strip('"') for n in line.split(",")}
    return "click" in names or "purchase" in names


def rechub_files(folder: Path) -> dict[str, Path | None]:
    found: dict[str, Path | None] = {}
    for split, word in RECHUB_SPLITS.items():
        matches = csv_files([folder], f"ali_ccp_{word}", folder, split, "pass path=<one file>")
        found[split] = matches[0] if matches else None
    return found


def read_rechub(path: Path, max_rows: int | None) -> tuple[pa.Table, list[str]]:
    header = read_header(path)
    for column in RECHUB_COLUMNS:
        if column not in header:
            raise DataError(
                f"{path}: required column {column!r} is missing (torch-rechub Ali-CCP header: {list(RECHUB_COLUMNS)})"
            )
    # a ctcvr column in the file is read (and checked against click AND purchase), else derived
    columns = [*RECHUB_COLUMNS, *(["ctcvr"] if "ctcvr" in header else [])]
    types = {c: pa.int64() for c in RECHUB_CATEGORICAL} | {c: pa.float64() for c in (*RECHUB_NUMERIC, *LABELS, "ctcvr")}
    try:
        table = read_csv(
            path,
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=columns),
            max_rows=max_rows,
        )
    except DataError as err:
        m = COLUMN_NO.search(str(err))
        if m and int(m.group(1)) < len(header):
            raise DataError(f"{path}: column {header[int(m.group(1))]!r} has a value of the wrong type: {err}") from None
        raise
    extra = [c for c in header if c not in columns]
    return table.select(columns), extra
