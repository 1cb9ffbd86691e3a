"""Batches as index slices of a :class:`TensorTable`, every row exactly once per epoch."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from polytask.data.table import Batch, TensorTable


class BatchLoader:
    """Iterate over a table in batches.

    With ``shuffle`` each epoch draws a fresh permutation from its own seeded generator (so runs
    are reproducible and independent of other random draws) and gathers rows by index; without
    it, batches are contiguous views. The last, smaller batch is kept unless ``drop_last``.

    The order of an epoch is a pure function of ``(seed, epoch)``: epoch ``e`` (counted from 0,
    :attr:`epoch` is the next one to be iterated) is the ``e``-th permutation the seeded generator
    draws, so :meth:`set_epoch` puts a fresh loader where a run resumed at that epoch expects it.
    """

    def __init__(
        self, table: TensorTable, batch_size: int, *, shuffle: bool = False, drop_last: bool = False, seed: int = 0
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.table = table
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        #: the epoch the next iteration yields (0 for the first)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield epoch ``epoch``'s order (as a loader that has already
        iterated ``epoch`` times would)."""
        if epoch < 0:
            raise ValueError("epoch must be >= 0")
        self.generator.manual_seed(self.seed)
        if self.shuffle:
            for _ in range(epoch):
                torch.randperm(self.table.num_rows, generator=self.generator)
        self.epoch = epoch

    def __len__(self) -> int:
        n, b = self.table.num_rows, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[Batch]:
        n, b = self.table.num_rows, self.batch_size
        stop = n - n % b if self.drop_last else n
        self.epoch += 1
        if self.shuffle:
            perm = torch.randperm(n, generator=self.generator)
            for start in range(0, stop, b):
                yield self.table.take(perm[start : start + b])
        else:
            for start in range(0, stop, b):
                yield self.table.slice(start, min(start + b, n))


def in_order(table, batch_size: int):
    """Every row of a split once, in order, ``batch_size`` rows at a time: a
    :class:`~polytask.data.table.TensorTable`'s contiguous slices, or what a split that reads its
    rows itself hands out (a streamed split's :meth:`in_order`,
    :class:`~polytask.data.stream_split.StreamedSplit`). Evaluation and prediction go through it."""
    own = getattr(table, "in_order", None)
    return own(batch_size) if own is not None else BatchLoader(table, batch_size)
