"""A training set of many Parquet files, known by its metadata: which files, their row groups and
row counts, their columns. Nothing here reads a row until asked, so a set larger than memory is
listed, checked and counted in milliseconds (the footers only).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from polytask.data.io import PARQUET_SUFFIXES, tag_source
from polytask.errors import DataError

#: characters that make ``data.train`` a glob pattern
GLOB_CHARS = "*?["


def is_file_set(path: str | os.PathLike) -> bool:
    """Whether ``path`` names several files: an existing directory, or a glob pattern."""
    text = str(path)
    return os.path.isdir(text) or any(c in text for c in GLOB_CHARS)


def list_files(path: str | os.PathLike) -> list[Path]:
    """The Parquet files of a directory (its ``*.parquet``/``*.pq`` files, not recursive; hidden
    and ``_``-prefixed files such as ``_SUCCESS`` skipped), of a glob, or the file itself, sorted by
    name. A DataError names ``path`` when nothing matches or a match is not a Parquet file."""
    text = str(path)
    if os.path.isdir(text):
        found = [p for p in sorted(Path(text).iterdir()) if p.is_file() and not p.name.startswith((".", "_"))]
        if not found:
            raise DataError(f"{text}: the directory holds no file (expected Parquet files)")
    elif any(c in text for c in GLOB_CHARS):
        found = [Path(p) for p in sorted(glob.glob(text)) if os.path.isfile(p)]
        if not found:
            raise DataError(f"{text}: the pattern matches no file")
    else:
        if not os.path.isfile(text):
            raise DataError(f"{text}: file not found")
        found = [Path(text)]
    other = [p for p in found if not p.name.lower().endswith(PARQUET_SUFFIXES)]
    if other:
        raise DataError(f"{text}: {other[0]} is not a Parquet file (.parquet or .pq); streaming reads Parquet only")
    return found


@dataclass(frozen=True)
class RowGroup:
    """One row group: ``file`` (index into :attr:`ParquetFiles.paths`), ``group`` (its index in the
    file), ``rows``."""

    file: int
    group: int
    rows: int


class ParquetFiles:
    """The Parquet files ``path`` names (a directory, a glob or one file) and their row groups.

    Every file's footer is read once: a file that is not Parquet, or is damaged, is a DataError
    naming it; :meth:`check_columns` names the first file lacking a column."""

    def __init__(self, path: str | os.PathLike) -> None:
        import pyarrow.parquet as pq

        self.path = str(path)
        self.paths = list_files(path)
        self.schemas: list[pa.Schema] = []
        self.units: list[RowGroup] = []
        for i, p in enumerate(self.paths):
            try:
                meta = pq.ParquetFile(p).metadata
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(f"{p}: cannot be read as Parquet: {' '.join(str(exc).split())}") from None
            self.schemas.append(meta.schema.to_arrow_schema())
            self.units += [RowGroup(i, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)
                           if meta.row_group(g).num_rows > 0]
        if not self.units:
            raise DataError(f"{self.path}: the Parquet files hold no rows")
        self._open: dict[int, object] = {}

    @property
    def num_rows(self) -> int:
        return sum(u.rows for u in self.units)

    @property
    def column_names(self) -> list[str]:
        """The first file's columns, in its order."""
        return list(self.schemas[0].names)

    def check_columns(self, required: list[str], optional: list[str] = ()) -> None:
        """DataError naming the first file that lacks one of ``required`` (and the columns)."""
        for p, schema in zip(self.paths, self.schemas):
            missing = [c for c in required if c not in schema.names and c not in optional]
            if missing:
                raise DataError(f"{p}: missing column(s) {', '.join(repr(c) for c in missing)}")

    def source(self, unit: RowGroup) -> str:
        """How errors name a row group: the file and the group."""
        return f"{self.paths[unit.file]} (row group {unit.group})"

    def _file(self, index: int):
        import pyarrow.parquet as pq

        if index not in self._open:
            if len(self._open) >= 8:  # a few open readers, not one per file of a large set
                self._open.pop(next(iter(self._open)))
            self._open[index] = pq.ParquetFile(self.paths[index])
        return self._open[index]

    def read(self, unit: RowGroup, columns: list[str]) -> pa.Table:
        """The ``columns`` of one row group (those the file has; the preprocessor fills optional
        ones), tagged with its file's path (relative paths in it resolve against that file)."""
        have = [c for c in columns if c in self.schemas[unit.file].names]
        try:
            table = self._file(unit.file).read_row_group(unit.group, columns=have)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{self.source(unit)}: cannot be read: {' '.join(str(exc).split())}") from None
        return tag_source(table, self.paths[unit.file])

    def chunks(self, units: list[RowGroup], columns: list[str], read_rows: int) -> Iterator[tuple[RowGroup, pa.Table]]:
        """``(unit, table)`` of at most ``read_rows`` rows at a time, ``units`` in order, rows in file order."""
        for unit in units:
            table = self.read(unit, columns)
            for start in range(0, table.num_rows, read_rows):
                yield unit, table.slice(start, read_rows)

    def to_table(self) -> pa.Table:
        """Every row of these row groups as one table, read whole (for the commands that read a
        run's splits again: evaluate, report, baselines; training streams instead)."""
        tables = [self.read(u, list(self.schemas[u.file].names)).replace_schema_metadata(None) for u in self.units]
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"{self.path}: the files cannot be stacked into one table: {' '.join(str(exc).split())}") from None
        return tag_source(table, self.paths[self.units[0].file])

    def select(self, units: list[RowGroup]) -> ParquetFiles:
        """The same files restricted to ``units`` (a carved validation or test part)."""
        part = object.__new__(ParquetFiles)
        part.__dict__.update(self.__dict__)
        part.units, part._open = list(units), {}
        return part
