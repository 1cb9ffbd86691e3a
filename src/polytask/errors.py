"""Errors raised on bad input. Each names the file, column or key at fault, so a user can fix it
without reading a traceback; the CLI prints only the message."""

from __future__ import annotations

import re


class PolytaskError(Exception):
    """Base class of the errors polytask raises on purpose."""


class DataError(PolytaskError, ValueError):
    """A data file or column is missing, empty or holds values its declared type cannot take.

    ``row`` (optional) is the 0-based data row the message names (``... at row 12``). Where a
    table is a shuffled part of a file (validation/test carved out of ``train``), the
    preprocessor maps it to the row of the file with :meth:`at_file_row` (the split keeps its
    rows' places in the file: :func:`polytask.data.io.file_rows`), so every message names
    the row a user finds in the file (0-based, header excluded).
    """

    def __init__(self, message: str, *, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row

    def named_row(self) -> int | None:
        """The row the message names: ``row``, else the one ``row <n>`` in the message."""
        if self.row is not None:
            return self.row
        found = set(re.findall(r"\brow (\d+)\b", str(self)))
        return int(found.pop()) if len(found) == 1 else None

    def at_file_row(self, file_row: int) -> DataError:
        """The same error naming ``file_row`` in place of the row it names."""
        row = self.named_row()
        if row is None:
            return self
        return DataError(re.sub(rf"\brow {row}\b", f"row {file_row}", str(self)), row=file_row)


class ConfigError(PolytaskError, ValueError):
    """A configuration key is unknown, missing or of the wrong type."""


class TrainingError(PolytaskError, RuntimeError):
    """Training cannot go on: a task's loss became NaN or infinite (diverged). The message names
    the task(s) and the epoch, with what to try; no checkpoint of a non-finite model is kept."""


class ExportError(PolytaskError, ValueError):
    """A run cannot be exported in the format asked (``polytask export``): the architecture
    declares it cannot (:meth:`~polytask.models.base.MultiTaskModel.export_refusal`), the exporter
    failed, or the exported model does not reproduce the PyTorch one. The message says which and why."""
