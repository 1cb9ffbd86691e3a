"""Shared pieces of the click -> conversion datasets (``ali_ccp``, ``aliexpress``, ``entire_space``).

All three describe one impression per row with a click label and a conversion label, and offer the
ESMM task triple (Ma et al., SIGIR 2018):

* ``ctr``: label ``click`` over all impressions;
* ``cvr``: label ``<conversion column>`` with ``where: "click == 1"`` (the clicked space only:
  post-click conversion rate);
* ``ctcvr``: label ``ctcvr`` = ``click AND conversion`` over all impressions.

Helpers here: the task dicts, label checks (0/1 only, naming the file and column), the derived
``ctcvr`` column, reading CSV files with fixed column types (optionally only the first rows),
resolving a ``path`` parameter against the data directory, and seeded splits (optionally by group).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from polytask.data.paths import DataNotFoundError, resolve_data_dir
from polytask.errors import DataError

TASK_NAMES: tuple[str, ...] = ("ctr", "cvr", "ctcvr")
CTCVR = "ctcvr"


def esmm_tasks(names: Sequence[str] | None, *, click: str = "click", conversion: str = "purchase") -> list[dict[str, Any]]:
    """The task dicts (config form) for ``names`` (default: ctr, cvr, ctcvr, in that order)."""
    chosen = list(TASK_NAMES if names is None else names)
    unknown = [n for n in chosen if n not in TASK_NAMES]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"tasks must be distinct names among {list(TASK_NAMES)}, got {names!r}")
    spec = {
        "ctr": {"name": "ctr", "kind": "binary", "label": click},
        "cvr": {"name": "cvr", "kind": "binary", "label": conversion, "where": f"{click} == 1"},
        "ctcvr": {"name": "ctcvr", "kind": "binary", "label": CTCVR},
    }
    return [dict(spec[n]) for n in chosen]


def check_fraction(name: str, value: float, *, allow_zero: bool = False) -> None:
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if isinstance(value, bool) or not (low_ok and value < 1.0):
        raise ValueError(f"{name} must be in {'[0' if allow_zero else '(0'}, 1), got {value!r}")


def check_max_rows(max_rows: int | None) -> None:
    if max_rows is not None and (isinstance(max_rows, bool) or int(max_rows) != max_rows or max_rows <= 0):
        raise ValueError(f"max_rows must be None or an integer > 0, got {max_rows!r}")


def binary_labels(table: pa.Table, column: str, source: str | os.PathLike) -> pa.Array:
    """Column ``column`` as int8 0/1; a null or any other value is a DataError naming the file,
    the column and the first offending row (0-based data row, header not counted)."""
    if column not in table.column_names:
        raise DataError(f"{source}: required column {column!r} is missing (columns: {table.column_names})")
    col = table.column(column)
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~((values == 0) | (values == 1)))  # NaN (from nulls) is bad too
    else:
        raise DataError(f"{source}: label column {column!r} must hold 0/1, found type {col.type}")
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{source}: label column {column!r} must hold 0 or 1, row {row} holds {col[row].as_py()!r}")
    return pa.array(values.astype(np.int8))


def with_ctcvr(
    table: pa.Table, source: str | os.PathLike, *, click: str = "click", conversion: str = "purchase"
) -> tuple[pa.Table, int]:
    """``click``/``conversion`` checked and cast to int8 0/1, plus ``ctcvr = click AND conversion``.

    A ``ctcvr`` column already in the file is kept if it equals ``click AND conversion`` and is a
    DataError otherwise. Returns the table and the number of rows with a conversion but no click
    (0 in every Ali-CCP/AliExpress file checked: conversion is only recorded after a click).
    """
    c = binary_labels(table, click, source)
    v = binary_labels(table, conversion, source)
    derived = pa.array((c.to_numpy(zero_copy_only=False) & v.to_numpy(zero_copy_only=False)).astype(np.int8))
    table = table.set_column(table.column_names.index(click), click, c)
    table = table.set_column(table.column_names.index(conversion), conversion, v)
    if CTCVR in table.column_names:
        given = binary_labels(table, CTCVR, source)
        if not given.equals(derived):
            row = int(np.flatnonzero(given.to_numpy(zero_copy_only=False) != derived.to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{source}: column 'ctcvr' differs from {click} AND {conversion} at row {row}")
        table = table.set_column(table.column_names.index(CTCVR), CTCVR, derived)
    else:
        table = table.append_column(CTCVR, derived)
    orphan = int(((v.to_numpy(zero_copy_only=False) == 1) & (c.to_numpy(zero_copy_only=False) == 0)).sum())
    return table, orphan


def read_header(path: Path) -> list[str]:
    """The column names on the first line of a (possibly gzipped) CSV file."""
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot be read: {err}") from None
    if not first.strip():
        raise DataError(f"{path}: file is empty (no header line)")
    return [name.strip().strip('"') for name in first.rstrip("\r\n").split(",")]


def first_line(path: Path, limit: int = 1 << 16) -> str:
    """The first line of a (possibly gzipped) text file, at most ``limit`` characters."""
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            return fh.readline(limit).rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot be read: {err}") from None


def read_csv(
    path: Path,
    *,
    read_options: pacsv.ReadOptions | None = None,
    parse_options: pacsv.ParseOptions | None = None,
    convert_options: pacsv.ConvertOptions | None = None,
    max_rows: int | None = None,
) -> pa.Table:
    """Read a CSV file (gzip detected from the name); with ``max_rows`` only its first rows
    (streamed, so a large file is not read in full). Arrow errors become DataErrors naming the file."""
    kwargs = {"read_options": read_options, "parse_options": parse_options, "convert_options": convert_options}
    try:
        if max_rows is None:
            table = pacsv.read_csv(path, **kwargs)
        else:
            reader = pacsv.open_csv(path, **kwargs)
            batches, rows = [], 0
            for batch in reader:
                batches.append(batch)
                rows += batch.num_rows
                if rows >= max_rows:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema).slice(0, int(max_rows))
    except (pa.ArrowInvalid, pa.ArrowKeyError, OSError) as err:
        raise DataError(f"{path}: cannot be read: {err}") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: file has no rows")
    return table


def resolve_path(
    path: str | os.PathLike | None,
    data_dir: str | os.PathLike | None,
    default: str,
    *,
    what: str,
    published_at: str = "",
) -> Path:
    """The file or folder a ``path`` parameter names.

    ``None`` -> ``<data dir>/<default>``. An absolute path, or a relative one that exists from the
    working directory, is used as is; any other relative path is looked up in the data directory.
    """
    where = f" (published at {published_at})" if published_at else ""
    if path is None:
        root = resolve_data_dir(data_dir)
        target = root / default
        if not target.exists():
            raise DataNotFoundError(f"{what}: {target} not found: put the files there or pass path=...{where}")
        return target
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        if not p.exists():
            raise DataNotFoundError(f"{what}: path {p} does not exist")
        return p
    try:
        root = resolve_data_dir(data_dir)
    except DataNotFoundError:
        raise DataNotFoundError(f"{what}: path {p} does not exist (from {Path.cwd()}) and there is no data directory") from None
    if (root / p).exists():
        return root / p
    raise DataNotFoundError(f"{what}: path {p} does not exist (neither from {Path.cwd()} nor in the data directory {root})")


def split_indices(
    n: int, fractions: Sequence[float], seed: int, groups: np.ndarray | None = None
) -> list[np.ndarray]:
    """Seeded random partition of ``range(n)`` into ``1 + len(fractions)`` sorted index arrays:
    the rest first, then one part per fraction. With ``groups`` (one key per row) whole groups are
    assigned (``round(fraction * number of groups)`` groups per part), so no group is split."""
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    if groups is None:
        order = rng.permutation(n)
        sizes = [int(round(f * n)) for f in fractions]
        bounds = np.cumsum([0, *sizes])
        parts = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        rest = order[bounds[-1]:]
        return [np.sort(rest), *(np.sort(p) for p in parts)]
    keys, inverse = np.unique(groups, return_inverse=True)
    order = rng.permutation(len(keys))
    sizes = [int(round(f * len(keys))) for f in fractions]
    part_of_group = np.zeros(len(keys), dtype=np.int64)  # 0 = rest
    start = 0
    for i, size in enumerate(sizes, start=1):
        part_of_group[order[start : start + size]] = i
        start += size
    part = part_of_group[inverse]
    return [np.flatnonzero(part == i) for i in range(len(fractions) + 1)]


def label_summary(table: pa.Table, click: str, conversion: str) -> str:
    clicks = int(pc.sum(table.column(click)).as_py() or 0)
    conv = int(pc.sum(table.column(conversion)).as_py() or 0)
    return f"{table.num_rows} rows, {clicks} clicks, {conv} conversions"
