"""Reading CSV and Parquet into pyarrow tables, with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from polytask.errors import DataError

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(path: str | os.PathLike) -> pa.Table:
    """Read a CSV (optionally gzipped) or Parquet file; reject missing, empty or unreadable files."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir() or path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty" if not path.is_dir() else f"{path}: is a directory, not a file")
    name = path.name.lower()
    try:
        if name.endswith(PARQUET_SUFFIXES):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif name.endswith(CSV_SUFFIXES):
            import pyarrow.csv as pacsv

            delimiter = "\t" if name.endswith(".tsv") else ","
            table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
        else:
            raise DataError(f"{path}: unknown file type (expected .csv, .csv.gz, .tsv or .parquet)")
    except DataError:
        raise
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: cannot be read: {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: file has no rows")
    return table


def to_arrow(data: Any, name: str = "<table>") -> pa.Table:
    """Accept a path, a pyarrow Table, a pandas DataFrame or a dict of columns."""
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, (str, os.PathLike)):
        return read_table(data)
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas.DataFrame
        table = pa.Table.from_pandas(data, preserve_index=False)
    elif isinstance(data, dict):
        table = pa.table(data)
    else:
        raise DataError(f"{name}: expected a file path, pyarrow.Table, pandas.DataFrame or dict, got {type(data).__name__}")
    if table.num_rows == 0:
        raise DataError(f"{name}: table has no rows")
    return table


def write_table(table: pa.Table, path: str | os.PathLike) -> None:
    """Write predictions as Parquet or CSV, chosen by the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif path.name.lower().endswith(CSV_SUFFIXES):
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        raise DataError(f"{path}: unknown output type (expected .parquet or .csv)")
