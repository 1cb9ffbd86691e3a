"""Predictions for Parquet data larger than memory: :func:`predict_stream`.

The input (a directory, a glob or one Parquet file: :class:`ParquetFiles`) is read row group by
row group in file order, ``read_rows`` rows and only the columns asked for at a time. Each chunk
goes through ``predict_chunk`` (a loaded run's :meth:`~polytask.run.Run.predict_table`, so the
columns are the in-memory ones) and is appended to the output with a pyarrow Parquet or CSV
writer, so memory is bounded by one row group and one chunk, not by the data. Rows keep file
order. The output is written under a temporary name and moved into place at the end
(:func:`polytask.fileio.atomic_path`): a failure leaves the output path as it was.

Text formats (CoNLL-U, CoNLL-2000) write the input's sentences back whole and are not streamed.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from polytask.data.io import CSV_SUFFIXES, PARQUET_SUFFIXES
from polytask.data.stream_files import ParquetFiles
from polytask.errors import DataError
from polytask.fileio import WriteError, atomic_path, make_dirs

#: ``predict_chunk(rows, source) -> output rows``: ``source`` names the file and row group
ChunkPredictor = Callable[[pa.Table, str], pa.Table]


@dataclass
class StreamedOutput:
    """What :func:`predict_stream` wrote: ``rows``, the output ``columns``, the number of
    ``chunks`` and ``peak_rows``, the most rows handed to ``predict_chunk`` at once (the bound
    on what was held, checked by the tests)."""

    rows: int
    columns: list[str]
    chunks: int
    peak_rows: int


def stream_format(output: str | os.PathLike) -> str:
    """``parquet`` or ``csv`` by the suffix of ``output``; any other (the text formats, which
    write whole sentences back) is a DataError naming the file."""
    name = Path(output).name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise DataError(f"{output}: a streamed input (a directory, a glob or --stream) writes .parquet or .csv "
                    "predictions only; predict one file, read whole, for other formats")


def check_input(files: ParquetFiles, required: list[str], optional: list[str], keep: list[str]) -> list[str]:
    """The columns to read from ``files``: ``required`` (the features) and ``keep``. A file lacking
    a required column or a ``keep`` column is a DataError naming it."""
    files.check_columns(required, optional)
    for path, schema in zip(files.paths, files.schemas):
        missing = [c for c in keep if c not in schema.names]
        if missing:
            raise DataError(f"{path}: --keep column(s) {', '.join(map(repr, missing))} not found")
    return list(dict.fromkeys([*required, *keep]))


def _open_writer(tmp: Path, fmt: str, schema: pa.Schema):
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(tmp, schema)
    import pyarrow.csv as pacsv

    return pacsv.CSVWriter(tmp, schema)


def _conform(table: pa.Table, schema: pa.Schema, source: str) -> pa.Table:
    """``table`` with the first chunk's column types (a file whose kept column is int32 where the
    first file's is int64); a DataError naming the chunk when it cannot be cast."""
    table = table.replace_schema_metadata(None)
    if table.schema.equals(schema):
        return table
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise DataError(f"{source}: its output columns ({table.schema.to_string(show_schema_metadata=False)}) "
                        f"do not fit the first file's; {' '.join(str(exc).split())[:200]}") from None


def predict_stream(files: ParquetFiles, columns: list[str], predict_chunk: ChunkPredictor,
                   output: str | os.PathLike, fmt: str, *, read_rows: int,
                   report: Callable[[int, int], None] | None = None) -> StreamedOutput:
    """Predict every row of ``files`` in file order, ``read_rows`` at a time, and write the rows
    ``predict_chunk`` returns to ``output`` as ``fmt`` (``parquet``: one row group per chunk, or
    ``csv``), atomically. ``report(rows done, rows in all)`` follows the progress; inside
    ``predict_chunk`` no progress is reported (its own batch loop would restart every chunk)."""
    if read_rows < 1:
        raise ValueError("read_rows must be >= 1")
    output = Path(output)
    if output.is_dir():
        raise WriteError(f"{output}: is a directory")
    make_dirs(output.parent)
    done = StreamedOutput(rows=0, columns=[], chunks=0, peak_rows=0)
    total = files.num_rows
    with atomic_path(output) as tmp:
        writer = None
        try:
            for unit, rows in files.chunks(files.units, columns, read_rows):
                source = files.source(unit)
                done.peak_rows = max(done.peak_rows, rows.num_rows)
                out = contextvars.Context().run(predict_chunk, rows, source)  # no inner progress bar
                if writer is None:
                    schema = out.schema.remove_metadata()
                    writer = _open_writer(tmp, fmt, schema)
                    done.columns = list(schema.names)
                try:
                    writer.write_table(_conform(out, schema, source))
                except pa.ArrowException as exc:  # a type the format cannot hold
                    # atomic_path words it "<output>: could not write (...)"
                    raise WriteError(f"the predictions as {fmt}: {' '.join(str(exc).split())[:200]}") from None
                done.rows += out.num_rows
                done.chunks += 1
                if report is not None:
                    report(done.rows, total)
        finally:
            if writer is not None:
                writer.close()
    return done
