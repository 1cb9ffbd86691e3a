"""Does an exported model reproduce the PyTorch one? Compared on generated batches of several sizes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from polytask.errors import ExportError

#: how close an exported output must be to PyTorch's: ``|got - want| <= ATOL + RTOL * |want|``
#: (absolute for probabilities, relative for regression values in the label's units)
ATOL = RTOL = 1e-5


def check_outputs(run: Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]], batches: Sequence[Sequence[np.ndarray]],
                  expected: Sequence[Sequence[np.ndarray]], names: Sequence[str], what: str) -> None:
    """ExportError unless ``run(batch)`` equals ``expected`` (within ATOL/RTOL) for every batch."""
    for batch, want in zip(batches, expected):
        got = run(batch)
        rows = len(batch[0])
        for name, g, w in zip(names, got, want):
            g = np.asarray(g)
            if g.shape != w.shape:
                raise ExportError(f"{what}: output {name!r} has shape {list(g.shape)} on a batch of {rows}, PyTorch gives "
                                  f"{list(w.shape)} (a batch size was fixed when exporting)")
            if not np.allclose(g, w, rtol=RTOL, atol=ATOL, equal_nan=True):
                diff = float(np.nanmax(np.abs(g.astype(np.float64) - w)))
                raise ExportError(f"{what}: output {name!r} differs from PyTorch by up to {diff:.3g} on a batch of {rows} rows "
                                  "(the model's computation depends on the data in a way the export did not capture)")


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (exporters write pages), of the error
    that caused it when there is one (``torch.onnx`` wraps ``torch.export``'s reason)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return f"{type(exc).__name__}: {line[:300]}"
    return type(exc).__name__
