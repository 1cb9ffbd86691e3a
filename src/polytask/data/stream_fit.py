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
    """The columns the tasks read that are not features (labels, weights, ``where``), in order."""
    from polytask.data.sources import task_columns

    features = {f.name for f in pre.features}
    return [c for c in task_columns(pre.tasks) if c not in features]


def fit_streaming(pre: Preprocessor, files: ParquetFiles, read_rows: int = 65536) -> Preprocessor:
    """Fit ``pre`` on every row of ``files`` in one streaming pass (see the module docstring)."""
    files.check_columns(pre.required_columns(), pre._optional())
    features = pre.required_columns(with_labels=False)
    for unit, chunk in files.chunks(files.units, features, read_rows):
        pre.partial_fit(chunk, files.source(unit))
    pre.finish(files.path)
    columns = list(dict.fromkeys(task_column_names(pre) + _where_features(pre)))
    labels = pa.concat_tables([files.read(u, columns).replace_schema_metadata(None) for u in files.units],
                              promote_options="permissive")
    pre.fit_labels(labels, files.path)
    pre.fitted = True
    return pre


def _where_features(pre: Preprocessor) -> list[str]:
    """Feature columns a task's ``where`` condition reads (label fitting needs them too)."""
    from polytask.data.conditions import parse_condition

    features = {f.name for f in pre.features}
    return [c for t in pre.tasks if t.where for c, _, _ in parse_condition(t.where) if c in features]
