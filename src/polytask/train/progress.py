"""The training progress display.

On a terminal: rich bars over the run's epochs and the current epoch's batches, each with its time
remaining. Off a terminal (a log file, CI, ``make demo | tee``): one plain line per epoch (loss,
monitored score, time, time remaining), flushed at once, so the output never sits silent for minutes.
:func:`batch_progress` does the same for the batch loops of ``polytask evaluate`` and ``predict``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from torch import Tensor


def is_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (stdout) is an interactive terminal (rich's own test)."""
    from rich.console import Console

    return Console(file=stream or sys.stdout).is_terminal


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressBar:
    """Progress over epochs and batches (a no-op when disabled). The running loss is read from
    device tensors every ``every`` batches only, so the hot path does not synchronise."""

    every = 20

    def __init__(self, enabled: bool, epochs: int, batches: int, *, first_epoch: int = 1, stream: Any = None) -> None:
        self.enabled, self.epochs, self.batches, self.first_epoch = enabled, epochs, batches, first_epoch
        self.stream = stream
        self.progress = None
        self.plain = enabled and not is_terminal(stream)
        self.started = time.perf_counter()
        self.epoch_started = self.started

    def __enter__(self) -> ProgressBar:
        if self.enabled and not self.plain:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                transient=False,
                console=Console(file=self.stream) if self.stream is not None else None,
            )
            self.progress.start()
            self.run = self.progress.add_task("run", total=self.epochs, completed=self.first_epoch - 1, status="")
            self.bar = self.progress.add_task("train", total=self.batches, status="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def start_epoch(self, epoch: int) -> None:
        self.epoch_started = time.perf_counter()
        if self.progress is not None:
            self.progress.reset(self.bar, total=self.batches, description=f"epoch {epoch}/{self.epochs}")

    def advance(self, done: int, loss_sum: Tensor) -> None:
        if self.progress is None:
            return
        if done % self.every == 0 or done == self.batches:
            self.progress.update(self.bar, completed=done, status=f"loss {float(loss_sum.sum()) / done:.4f}")

    def end_epoch(self, epoch: int, record: Mapping[str, Any], monitor: str | None = None, score: float | None = None,
                  best: float | None = None, best_epoch: int | None = None) -> None:
        """After an epoch: its training loss and, with a validation split, the monitored score."""
        if not self.enabled:
            return
        loss = sum(record.get("train_loss", {}).values())
        val = "" if monitor is None or score is None else f"val {monitor} {score:.4f}"
        if val and best is not None:
            val += f" (best {best:.4f}, epoch {best_epoch})"
        if self.progress is not None:
            self.progress.update(self.bar, status=val)
            self.progress.update(self.run, completed=epoch)
            self.progress.refresh()
            if val:
                self.progress.console.print(f"epoch {epoch}: train loss {loss:.4f}, {val}", highlight=False)
            return
        now = time.perf_counter()
        done = epoch - self.first_epoch + 1
        left = (now - self.started) / max(done, 1) * (self.epochs - epoch)
        parts = [f"epoch {epoch}/{self.epochs}", f"train loss {loss:.4f}"] + ([val] if val else [])
        parts += [duration(now - self.epoch_started), f"eta {duration(left)}"]
        print(" | ".join(parts), file=self.stream or sys.stdout, flush=True)


# -- bars for work over batches outside training (evaluate, predict) ---------------------------------
_reporter: ContextVar[Callable[[int, int], None] | None] = ContextVar("polytask_batch_progress", default=None)


def batch_reporter() -> Callable[[int, int], None] | None:
    """The callback ``(batches done, batches in all)`` of the enclosing :func:`batch_progress`, if any."""
    return _reporter.get()


@contextmanager
def batch_progress(description: str, *, enabled: bool = True, stream: Any = None) -> Iterator[None]:
    """Show the progress of the batch loops run inside (:func:`polytask.train.evaluation.predict_raw`
    reports to it) as a transient bar with time remaining, on stderr (stdout stays the command's
    output), when stderr is a terminal. Used by ``polytask evaluate`` and ``polytask predict``."""
    if not enabled or not is_terminal(stream if stream is not None else sys.stderr):
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(file=stream, stderr=stream is None)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True) as progress:
        bar = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        token = _reporter.set(update)
        try:
            yield
        finally:
            _reporter.reset(token)
