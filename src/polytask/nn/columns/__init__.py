"""Per-task column families: T networks of identical shape run side by side as ``[T, B, ...]``.

Registered in :data:`polytask.registry.COLUMNS` (``mlp``, ``cnn``, ``lstm``); the contract is in
:mod:`polytask.nn.columns.base`. Models built on per-task columns (cross-stitch, sluice, soft
sharing) take ``columns: <name>`` and ``column_params: {...}``.
"""

from polytask.nn.columns import cnn, lstm, mlp  # noqa: F401 - registers the built-in families
from polytask.nn.columns.base import ColumnFamily, build_columns, make_columns
from polytask.nn.columns.cnn import CNNColumns
from polytask.nn.columns.lstm import LSTMColumns
from polytask.nn.columns.mlp import ColumnLayer, MLPColumns, TaskColumns

__all__ = ["ColumnFamily", "build_columns", "make_columns", "ColumnLayer", "TaskColumns", "MLPColumns",
           "CNNColumns", "LSTMColumns"]
