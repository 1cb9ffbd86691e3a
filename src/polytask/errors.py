"""Errors raised on bad input. Each names the file, column or key at fault, so a user can fix it
without reading a traceback; the CLI prints only the message."""

from __future__ import annotations


class PolytaskError(Exception):
    """Base class of the errors polytask raises on purpose."""


class DataError(PolytaskError, ValueError):
    """A data file or column is missing, empty or holds values its declared type cannot take."""


class ConfigError(PolytaskError, ValueError):
    """A configuration key is unknown, missing or of the wrong type."""


class TrainingError(PolytaskError, RuntimeError):
    """Training cannot go on: a task's loss became NaN or infinite (diverged). The message names
    the task(s) and the epoch, with what to try; no checkpoint of a non-finite model is kept."""
