"""The training progress display: a rich progress bar over epochs and batches."""

from __future__ import annotations

from typing import Any

from torch import Tensor


class ProgressBar:
    """A rich progress bar over epochs and batches (a no-op when disabled). The running loss is
    read from device tensors every ``every`` batches only, so the hot path does not synchronise."""

    every = 20

    def __init__(self, enabled: bool, epochs: int, batches: int) -> None:
        self.enabled, self.epochs, self.batches = enabled, epochs, batches
        self.progress = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                transient=False,
            )
            self.progress.start()
            self.bar = self.progress.add_task("train", total=self.batches, status="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def start_epoch(self, epoch: int) -> None:
        if self.progress is not None:
            self.progress.reset(self.bar, total=self.batches, description=f"epoch {epoch}/{self.epochs}")

    def advance(self, done: int, loss_sum: Tensor) -> None:
        if self.progress is None:
            return
        if done % self.every == 0 or done == self.batches:
            self.progress.update(self.bar, completed=done, status=f"loss {float(loss_sum.sum()) / done:.4f}")

    def end_epoch(self, epoch: int, monitor: str, score: float, best: float | None) -> None:
        if self.progress is not None:
            self.progress.update(self.bar, status=f"val {monitor} {score:.4f} (best {best:.4f})" if best is not None else "")
            self.progress.refresh()
            self.progress.console.print(f"epoch {epoch}: validation {monitor} = {score:.4f}")
