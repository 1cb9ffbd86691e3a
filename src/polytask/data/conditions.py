"""Sample-space conditions such as ``click == 1`` or ``click == 1 and country != 'US'``.

A task with ``where`` is defined only on the rows satisfying it (ESMM's CVR lives on clicked
impressions); other rows are masked out of its loss and metrics. The grammar is deliberately
small: comparisons ``column OP value`` joined by ``and``.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polytask.errors import DataError

_CLAUSE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(==|!=|>=|<=|>|<)\s*(.+?)\s*$")
# "and" outside quotes only (an even number of quote characters follows it), so a value such as
# 'Trinidad and Tobago' stays one clause
_AND = re.compile(r"""\s+and\s+(?=(?:[^'"]*(?:'[^']*'|"[^"]*"))*[^'"]*$)""", re.IGNORECASE)
_OPS = {"==": pc.equal, "!=": pc.not_equal, ">=": pc.greater_equal, "<=": pc.less_equal, ">": pc.greater, "<": pc.less}


def parse_condition(text: str) -> list[tuple[str, str, object]]:
    """Parse ``"a == 1 and b != 'x'"`` into ``[(column, op, value), ...]``."""
    clauses = []
    for part in _AND.split(text.strip()):
        m = _CLAUSE.match(part)
        if not m:
            raise DataError(f"where: cannot parse {part!r} in {text!r} (expected 'column == value', joined by 'and')")
        column, op, raw = m.groups()
        value: object
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            value = raw[1:-1]
        else:
            try:
                value = float(raw) if any(c in raw for c in ".eE") else int(raw)
            except ValueError:
                if re.search(r"\s|['\"]", raw):  # e.g. a dangling "and" or an unclosed quote
                    raise DataError(f"where: cannot parse {part!r} in {text!r} (quote text values: 'like this')") from None
                value = raw
        clauses.append((column, op, value))
    return clauses


def evaluate_condition(table: pa.Table, text: str, source: str = "<table>") -> np.ndarray:
    """Boolean numpy mask of the rows satisfying the condition (null compares as False)."""
    mask = np.ones(table.num_rows, dtype=bool)
    for column, op, value in parse_condition(text):
        if column not in table.column_names:
            raise DataError(f"{source}: column {column!r} used in where: {text!r} is missing")
        col = table.column(column)
        if isinstance(value, str) and not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
            col = pc.cast(col, pa.string())
        elif not isinstance(value, str) and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            try:
                col = pc.cast(col, pa.float64())
            except pa.ArrowInvalid:
                raise DataError(f"{source}: column {column!r} in where: {text!r} is not numeric") from None
        result = _OPS[op](col, pa.scalar(value))
        mask &= pc.fill_null(result, False).to_numpy(zero_copy_only=False).astype(bool)
    return mask
