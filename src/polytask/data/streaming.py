"""Training batches streamed from Parquet row groups larger than memory: :class:`ParquetStream`.

Per epoch:

1. **Order.** The row groups are put in a seeded order that depends on ``(seed, epoch)`` only, so
   :meth:`ParquetStream.set_epoch` gives a resumed run the order of the uninterrupted one.
2. **Shards.** The rows of that order, laid end to end, are cut into ``world_size`` contiguous
   ranges of ``N // world_size`` or one more rows; each process reads only the row groups its range
   touches (all of them whole but at most two, which it shares with a neighbour and slices). Every
   row is in exactly one range, so an epoch sees every row exactly once across the processes.
3. **Decoding.** A background thread reads the process's row groups ``read_rows`` rows at a time
   (only the columns the preprocessor needs), encodes them with the fitted preprocessor and runs
   them through the shuffle buffer, a couple of blocks ahead of training (pyarrow, numpy and torch
   release the GIL, so this overlaps the training step); the training loop only cuts batches.
4. **Shuffle buffer.** Encoded rows gather in a buffer of at most ``shuffle_buffer`` rows (plus the
   chunk being added); when it is full it is permuted and all but half of it leaves for batches,
   so rows from different row groups and files mix while memory stays bounded by the buffer, not
   by the data. ``shuffle_buffer: 0`` keeps file order (evaluation).
5. **Equal steps.** Data parallel training needs every process to take the same number of
   optimizer steps (each step all-reduces). Every process yields exactly
   ``ceil((N // world_size) / batch_size)`` batches: full batches, then the rest in the last one
   (which may hold one row more than ``batch_size`` on a process with one row more). The global
   batch of a step is the union of the processes' batches, and the trainer's loss rescaling
   (:func:`polytask.train.distributed.globalise`) makes its gradient the mean over exactly those
   rows, so uneven last batches cost nothing in correctness; no row is dropped or repeated.

Why contiguous ranges rather than whole row groups per process: balancing whole row groups leaves
the processes with different row counts (row groups differ in size, the last of each file is
short), and the steps would then have to be padded or rows dropped. Ranges give counts within one
row of each other for the price of reading at most two row groups twice.

The batches are already this process's share: :attr:`ParquetStream.per_process` tells the
trainer not to shard them again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from polytask.data.preprocessor import Preprocessor
from polytask.data.stream_files import ParquetFiles, RowGroup
from polytask.data.table import Batch
from polytask.errors import DataError

#: rows held by the shuffle buffer unless ``data.stream.shuffle_buffer`` says otherwise
DEFAULT_SHUFFLE_BUFFER = 500_000
#: rows decoded and encoded at a time unless ``data.stream.read_rows`` says otherwise
DEFAULT_READ_ROWS = 65_536


def concat(parts: list[Batch]) -> Batch:
    """One batch holding the rows of ``parts`` in order."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return Batch(*({k: torch.cat([getattr(p, group)[k] for p in parts]) for k in getattr(first, group)}
                   for group in ("features", "labels", "masks", "weights")))


def take(batch: Batch, index: torch.Tensor) -> Batch:
    """The rows of ``batch`` at ``index``."""
    return Batch(*({k: v.index_select(0, index) for k, v in d.items()}
                   for d in (batch.features, batch.labels, batch.masks, batch.weights)))


def cut(batch: Batch, start: int, stop: int) -> Batch:
    """Rows ``start:stop`` of ``batch`` as views."""
    return Batch(*({k: v[start:stop] for k, v in d.items()}
                   for d in (batch.features, batch.labels, batch.masks, batch.weights)))


def epoch_order(units: list[RowGroup], seed: int, epoch: int, shuffle: bool) -> list[RowGroup]:
    """The row groups of epoch ``epoch`` (from 0) in their seeded order (file order without shuffle)."""
    if not shuffle:
        return list(units)
    perm = np.random.default_rng([seed, epoch]).permutation(len(units))
    return [units[i] for i in perm]


def rank_slices(units: list[RowGroup], rank: int, world_size: int) -> list[tuple[RowGroup, int, int]]:
    """``(row group, start, stop)`` of process ``rank``'s contiguous range of the rows of
    ``units`` laid end to end (rows ``rank * N // W`` to ``(rank + 1) * N // W``)."""
    total = sum(u.rows for u in units)
    lo, hi = rank * total // world_size, (rank + 1) * total // world_size
    out, offset = [], 0
    for u in units:
        start, stop = max(lo, offset), min(hi, offset + u.rows)
        if start < stop:
            out.append((u, start - offset, stop - offset))
        offset += u.rows
    return out


class ShuffleBuffer:
    """Rows in, rows out in a random order, holding at most ``capacity`` rows plus one chunk.

    The rows live in preallocated slots (``capacity + chunk`` rows per tensor, allocated at the
    first chunk): a chunk is written into free slots, and when the held rows reach ``capacity``
    all but ``capacity // 2`` of them, drawn at random, are gathered out and their slots freed.
    Every row is copied twice (in and out), whatever the buffer's size. :attr:`peak_rows` records
    the most rows held."""

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        self.capacity, self.generator = capacity, generator
        self.pool: Batch | None = None
        self.used = torch.empty(0, dtype=torch.long)  # slots holding a row, in arrival order
        self.free = torch.empty(0, dtype=torch.long)
        self.peak_rows = 0

    @property
    def rows(self) -> int:
        return len(self.used)

    def _store(self, chunk: Batch) -> None:
        if self.pool is None:
            size = self.capacity + len(chunk)
            self.pool = Batch(*({k: v.new_empty((size, *v.shape[1:])) for k, v in d.items()}
                                for d in (chunk.features, chunk.labels, chunk.masks, chunk.weights)))
            self.free = torch.arange(size)
        if len(chunk) > len(self.free):  # a chunk larger than the first one: grow the slots
            extra = len(chunk) - len(self.free)
            size = len(self.pool)
            self.pool = concat([self.pool, cut(chunk, 0, extra)])  # contents irrelevant: free slots
            self.free = torch.cat([self.free, torch.arange(size, size + extra)])
        slots, self.free = self.free[: len(chunk)], self.free[len(chunk):]
        for mine, theirs in zip((self.pool.features, self.pool.labels, self.pool.masks, self.pool.weights),
                                (chunk.features, chunk.labels, chunk.masks, chunk.weights)):
            for k, v in theirs.items():
                mine[k].index_copy_(0, slots, v)
        self.used = torch.cat([self.used, slots])

    def _gather(self, count: int) -> Batch:
        """``count`` held rows drawn at random (in random order); their slots are freed."""
        order = torch.randperm(len(self.used), generator=self.generator)
        out, self.used = self.used[order[:count]], self.used[order[count:]]
        self.free = torch.cat([self.free, out])
        return take(self.pool, out)

    def add(self, chunk: Batch) -> Batch | None:
        """Hold ``chunk``; the rows that leave (shuffled), if the buffer filled up."""
        self._store(chunk)
        self.peak_rows = max(self.peak_rows, self.rows)
        if self.rows < self.capacity:
            return None
        return self._gather(self.rows - self.capacity // 2)

    def drain(self) -> Batch | None:
        """Every row still held, shuffled."""
        return self._gather(self.rows) if self.rows else None


class ParquetStream:
    """This process's batches of one epoch of a Parquet training set, streamed (see the module
    docstring: order, shards, decoding, shuffle buffer, equal steps).

    Iterating yields :class:`Batch` es of ``batch_size`` rows (the last of an epoch may differ);
    ``len()`` is the number of batches, known from the row-group metadata without reading a row.
    ``shuffle_buffer: 0`` reads the row groups in file order and yields rows in that order (every
    row once: evaluation and prediction)."""

    #: the batches are already this process's share; the trainer must not shard them again
    per_process = True

    def __init__(
        self, files: ParquetFiles, preprocessor: Preprocessor, batch_size: int, *,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, read_rows: int = DEFAULT_READ_ROWS, seed: int = 0,
        rank: int = 0, world_size: int = 1, with_labels: bool = True, prefetch: int = 2,
    ) -> None:
        if batch_size < 1 or read_rows < 1 or shuffle_buffer < 0:
            raise ValueError("batch_size and read_rows must be >= 1, shuffle_buffer >= 0")
        if files.num_rows < world_size:
            raise DataError(f"{files.path}: {files.num_rows} row(s) cannot be shared by {world_size} processes")
        self.files, self.pre = files, preprocessor
        self.batch_size, self.shuffle_buffer, self.read_rows = batch_size, shuffle_buffer, read_rows
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.with_labels, self.prefetch = with_labels, prefetch
        self.columns = preprocessor.required_columns(with_labels)
        #: the epoch the next iteration yields (0 for the first)
        self.epoch = 0
        #: the most rows the shuffle buffer held in the last epoch
        self.peak_rows = 0

    @property
    def shuffle(self) -> bool:
        return self.shuffle_buffer > 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield epoch ``epoch``'s order (as after ``epoch`` iterations)."""
        if epoch < 0:
            raise ValueError("epoch must be >= 0")
        self.epoch = epoch

    @property
    def num_rows(self) -> int:
        """Rows of this process in one epoch."""
        n, w = self.files.num_rows, self.world_size
        return (self.rank + 1) * n // w - self.rank * n // w

    def __len__(self) -> int:
        """Batches per epoch: the same on every process (``ceil((N // world_size) / batch_size)``)."""
        return -(-(self.files.num_rows // self.world_size) // self.batch_size)

    def batch_sizes(self) -> list[int]:
        """This process's batch sizes in one epoch: ``batch_size`` rows, the rest in the last."""
        steps = len(self)
        return [self.batch_size] * (steps - 1) + [self.num_rows - (steps - 1) * self.batch_size]

    def slices(self, epoch: int) -> list[tuple[RowGroup, int, int]]:
        """What this process reads in epoch ``epoch``: ``(row group, start, stop)`` in order."""
        return rank_slices(epoch_order(self.files.units, self.seed, epoch, self.shuffle), self.rank, self.world_size)

    def _encoded(self, slices: list[tuple[RowGroup, int, int]]) -> Iterator[Batch]:
        """Encoded chunks of ``slices`` in order (read and encoded ``read_rows`` at a time)."""
        for unit, start, stop in slices:
            table = self.files.read(unit, self.columns)
            source = self.files.source(unit)
            for a in range(start, stop, self.read_rows):
                part = table.slice(a, min(self.read_rows, stop - a))
                yield self.pre.transform(part, source, with_labels=self.with_labels).all()

    def _shuffled(self, slices: list[tuple[RowGroup, int, int]], buffer: ShuffleBuffer | None) -> Iterator[Batch]:
        """Encoded rows of ``slices`` in blocks, in the order they leave the shuffle ``buffer``
        (file order without one)."""
        for chunk in self._encoded(slices):
            rows = buffer.add(chunk) if buffer is not None else chunk
            if rows is not None:
                yield rows
        rest = buffer.drain() if buffer is not None else None
        if rest is not None:
            yield rest

    def _prefetched(self, blocks: Iterator[Batch]) -> Iterator[Batch]:
        """``blocks`` produced by a background thread, ``prefetch`` blocks ahead: reading, decoding,
        encoding and shuffling overlap the training step (pyarrow, numpy and torch release the GIL)."""
        if self.prefetch < 1:
            yield from blocks
            return
        out: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def work() -> None:
            try:
                for chunk in blocks:
                    while not stop.is_set():
                        try:
                            out.put(chunk, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                item = done
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                item = exc
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        thread = threading.Thread(target=work, name="polytask-parquet-stream", daemon=True)
        thread.start()
        try:
            while True:
                item = out.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        self.epoch += 1
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        buffer = ShuffleBuffer(self.shuffle_buffer, generator) if self.shuffle else None
        sizes = iter(self.batch_sizes())
        want = next(sizes)
        pending: list[Batch] = []
        held = 0

        def ready() -> Iterator[Batch]:  # cut the next batches off the front of the pending rows
            nonlocal want, held
            while want and held >= want:
                parts, need = [], want
                while need:
                    head = pending[0]
                    if len(head) <= need:
                        parts.append(pending.pop(0))
                        need -= len(head)
                    else:
                        parts.append(cut(head, 0, need))
                        pending[0] = cut(head, need, len(head))
                        need = 0
                held -= want
                yield concat(parts)
                want = next(sizes, 0)

        for rows in self._prefetched(self._shuffled(self.slices(epoch), buffer)):
            pending.append(rows)
            held += len(rows)
            yield from ready()
        if buffer is not None:
            self.peak_rows = buffer.peak_rows


class StreamSchedule:
    """The trainer's view of a :class:`ParquetStream` (the schedule protocol of
    :mod:`polytask.train.schedule`: ``(batch, None)`` per step, ``len``, ``set_epoch``): the
    ``joint`` schedule over streamed rows."""

    def __init__(self, stream: ParquetStream) -> None:
        self.stream = stream
        self.per_process = stream.per_process

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.stream)

    def __iter__(self) -> Iterator[tuple[Batch, None]]:
        for batch in self.stream:
            yield batch, None
