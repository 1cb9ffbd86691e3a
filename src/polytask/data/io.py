"""Reading CSV, Parquet and token-per-line text files (CoNLL-U, CoNLL-2000 columns) into pyarrow
tables, with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from polytask.errors import DataError

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: CoNLL-U (one sentence per row: :func:`polytask.data.text_formats.read_conllu`)
CONLLU_SUFFIXES = (".conllu", ".conllu.gz")
#: CoNLL-2000 style columns (:func:`polytask.data.text_formats.read_conll_columns`)
CONLL_SUFFIXES = (".conll", ".conll.gz")


def read_table(path: str | os.PathLike) -> pa.Table:
    """Read a CSV (optionally gzipped), Parquet, CoNLL-U or CoNLL-2000 column file (the last two
    one row per sentence, optionally gzipped); reject missing, empty or unreadable files. A
    directory or glob of Parquet files is read whole, the files concatenated in name order (a set
    larger than memory is streamed instead: :mod:`polytask.data.streaming`)."""
    from polytask.data.stream_files import is_file_set

    if is_file_set(path):
        return read_parquet_set(path)
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
        elif name.endswith(CONLLU_SUFFIXES):
            from polytask.data.text_formats import read_conllu

            table = read_conllu(path)
        elif name.endswith(CONLL_SUFFIXES):
            from polytask.data.text_formats import read_conll_columns

            table = read_conll_columns(path)
        else:
            raise DataError(
                f"{path}: unknown file type (expected .csv, .csv.gz, .tsv, .txt, .parquet, .pq, "
                ".conllu, .conllu.gz, .conll or .conll.gz)"
            )
    except DataError:
        raise
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: cannot be read: {' '.join(str(exc).split())}") from None
    if name.endswith(CSV_SUFFIXES):
        check_text(table, str(path))
    check_column_names(table, str(path))
    if table.num_rows == 0:
        raise DataError(f"{path}: file has no rows")
    return tag_source(table, path)


def read_parquet_set(path: str | os.PathLike) -> pa.Table:
    """Every row of the Parquet files a directory or glob names, in file-name order, as one table
    (columns the files do not share are refused naming the file, by :func:`pyarrow.concat_tables`)."""
    from polytask.data.stream_files import list_files

    files = list_files(path)
    tables = [read_table(f) for f in files]
    try:
        table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{path}: the files cannot be stacked into one table: {' '.join(str(exc).split())}") from None
    return tag_source(table, files[0])


SOURCE_KEY = b"polytask.source"


def tag_source(table: pa.Table, path: str | os.PathLike) -> pa.Table:
    """Record in ``table``'s schema metadata the absolute path of the file it was read from, so
    relative image paths in it resolve against that file's directory (:func:`source_directory`);
    kept by the seeded splits carved from it."""
    meta = dict(table.schema.metadata or {})
    meta[SOURCE_KEY] = os.path.abspath(path).encode()
    return table.replace_schema_metadata(meta)


def source_directory(table: pa.Table) -> Path | None:
    """The directory of the file ``table`` was read from by :func:`read_table`; None for a table
    built in memory (or stacked from several sources)."""
    meta = (table.schema.metadata or {}).get(SOURCE_KEY)
    return Path(meta.decode()).parent if meta else None


def check_column_names(table: pa.Table, source: str) -> None:
    """Refuse a column name given twice (a table cannot say which one a feature means)."""
    names = table.column_names
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise DataError(f"{source}: column {n!r} appears {names.count(n)} times in the header; column names must be unique")
        seen.add(n)


def check_text(table: pa.Table, source: str) -> None:
    """A CSV column Arrow could only read as bytes holds invalid UTF-8: refuse it naming the
    column and the first bad row (0-based, header excluded; the line when no field spans lines)."""
    for name, typ in zip(table.column_names, table.schema.types):
        if not (pa.types.is_binary(typ) or pa.types.is_large_binary(typ)):
            continue
        for i, v in enumerate(table.column(name).to_pylist()):
            if v is None:
                continue
            try:
                v.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{source}: column {name!r} holds invalid UTF-8 at row {i} (line {i + 2} if no field spans lines): "
                    f"{v[max(exc.start - 8, 0):exc.end + 8]!r}; save the file as UTF-8",
                    row=i,
                ) from None
        raise DataError(f"{source}: column {name!r} holds bytes that are not text; save the file as UTF-8")


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
    check_column_names(table, name)
    if table.num_rows == 0:
        raise DataError(f"{name}: table has no rows")
    return table


def write_table(table: pa.Table, path: str | os.PathLike) -> None:
    """Write a table as Parquet, CSV, CoNLL-U or CoNLL-2000 columns, chosen by the suffix (the
    text formats need one row per sentence with list columns, as :func:`read_table` gives)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    meta = table.schema.metadata or {}
    if SOURCE_KEY in meta or SPLIT_KEY in meta:  # where the rows came from: true of this table only
        table = table.replace_schema_metadata({k: v for k, v in meta.items() if k not in (SOURCE_KEY, SPLIT_KEY)} or None)
    if name.endswith(PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif name.endswith(CSV_SUFFIXES):
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    elif name.endswith(CONLLU_SUFFIXES):
        from polytask.data.text_formats import write_conllu

        write_conllu(table, path)
    elif name.endswith(CONLL_SUFFIXES):
        from polytask.data.text_formats import write_conll_columns

        write_conll_columns(table, path)
    else:
        raise DataError(f"{path}: unknown output type (expected .parquet, .csv, .conllu or .conll)")


SPLIT_KEY = b"polytask.split"


def tag_split(part: pa.Table, *, seed: int, rows: int, bounds: list[int], index: int) -> pa.Table:
    """Record in ``part``'s schema metadata how it was carved from a file of ``rows`` rows
    (:func:`polytask.data.sources.split_table`), so :func:`file_rows` can give the file row of
    each of its rows; a few numbers, not a row index (the permutation is recomputed on demand)."""
    import json

    meta = dict(part.schema.metadata or {})
    meta[SPLIT_KEY] = json.dumps({"seed": seed, "rows": rows, "bounds": bounds, "index": index}).encode()
    return part.replace_schema_metadata(meta)


def split_permutation(seed: int, rows: int):
    """The seeded row order :func:`polytask.data.sources.split_table` carves parts from."""
    import numpy as np

    return np.random.default_rng(seed).permutation(rows)


def file_rows(table: pa.Table):
    """For a part carved from a file by a seeded split: the file row (0-based, header excluded)
    of each of its rows, as an int array; None for a table read whole."""
    import json

    meta = (table.schema.metadata or {}).get(SPLIT_KEY)
    if meta is None:
        return None
    info = json.loads(meta)
    a, b = info["bounds"][info["index"]], info["bounds"][info["index"] + 1]
    if b - a != table.num_rows:  # the table was changed since it was carved
        return None
    return split_permutation(info["seed"], info["rows"])[a:b]
