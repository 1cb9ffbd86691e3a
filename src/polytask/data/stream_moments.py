"""Running count, mean, sum of squared deviations, minimum and maximum of a column (or of every
element of a vector column), merged chunk by chunk.

Encoders fit their scaling on one chunk (the whole column in memory) or on many (row groups of a
training set read in a streaming pass) through this one accumulator, so both paths give the same
state. Chunks are combined with Chan, Golub and LeVeque's pairwise update (the parallel form of
Welford's), in float64: no sum of squares is ever subtracted from another, so a column with a large
mean and a small spread keeps its variance.
"""

from __future__ import annotations

import numpy as np


class Moments:
    """Moments of values seen so far, per element of ``shape`` (``()`` for a scalar column)."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.count = np.zeros(shape, dtype=np.int64)
        self.mean = np.zeros(shape, dtype=np.float64)
        self.m2 = np.zeros(shape, dtype=np.float64)
        self.min = np.full(shape, np.inf)
        self.max = np.full(shape, -np.inf)

    def add(self, x: np.ndarray, missing: np.ndarray | None = None) -> Moments:
        """Merge a chunk: ``x`` is ``[rows, *shape]``; ``missing`` (same shape, optional) marks
        elements to leave out (NaN)."""
        if missing is None:
            count = np.full(self.count.shape, x.shape[0], dtype=np.int64)
            total = x.sum(0, dtype=np.float64)
        else:
            count = (~missing).sum(0)
            total = np.where(missing, 0.0, x).sum(0, dtype=np.float64)
        if not np.any(count):
            return self
        mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        dev = x - mean
        if missing is not None:
            dev = np.where(missing, 0.0, dev)
        m2 = np.square(dev, dtype=np.float64).sum(0)
        filled_lo = x if missing is None else np.where(missing, np.inf, x)
        filled_hi = x if missing is None else np.where(missing, -np.inf, x)
        self.min = np.minimum(self.min, filled_lo.min(0))
        self.max = np.maximum(self.max, filled_hi.max(0))
        n = self.count + count
        delta = mean - self.mean
        share = np.divide(count, n, out=np.zeros(n.shape), where=n > 0)
        self.m2 = self.m2 + m2 + np.square(delta) * self.count * share
        self.mean = self.mean + delta * share
        self.count = n
        return self

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (0 where nothing was seen)."""
        return np.sqrt(np.divide(self.m2, self.count, out=np.zeros_like(self.m2), where=self.count > 0))
