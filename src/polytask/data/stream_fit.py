"""Fit a :class:`~polytask.data.preprocessor.Preprocessor` on Parquet files larger than memory.

One pass over the training row groups, a few thousand rows at a time and only the feature
columns: every encoder adds each chunk to its running state (value counts, float64 moments) and
is fixed at the end. Because each encoder's in-memory ``fit`` is the same ``partial_fit`` +
``finish`` on one chunk, the state equals the in-memory fit on the concatenated files (moments to
rounding, vocabularies exactly, ``min_count`` and tie order included).

Label state (classes, target scaling) and the "can this task train" checks read the task columns
(labels, weights, ``where``) of every file whole: a few columns, a small share of the data.
"""

from __future__ import annotations

import pyarrow as pa

from polytask.data.preprocessor import Preprocessor
from polytask.data.stream_files import ParquetFiles


def task_column_names(pre: Preprocessor) -> list[str]:
    """Every column the tasks read (labels, weights, ``where`` columns, features among them), in order."""
    from polytask.data.sources import task_columns

    return list(task_columns(pre.tasks))


def fit_streaming(pre: Preprocessor, files: ParquetFiles, read_rows: int = 65536) -> Preprocessor:
    """Fit ``pre`` on every row of ``files`` in one streaming pass (see the module docstring)."""
    files.check_columns(pre.required_columns(), pre._optional())
    features = pre.required_columns(with_labels=False)
    for unit, chunk in files.chunks(files.units, features, read_rows):
        pre.partial_fit(chunk, files.source(unit))
    pre.finish(files.path)
    labels = pa.concat_tables([files.read(u, task_column_names(pre)).replace_schema_metadata(None) for u in files.units],
                              promote_options="permissive")
    pre.fit_labels(labels, files.path)
    pre.fitted = True
    return pre

