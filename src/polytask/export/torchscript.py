"""TorchScript export: ``torch.jit.trace`` of an :class:`~polytask.export.wrapper.ExportWrapper`.

Traced on a batch of several rows (never 1, so no size is taken for a constant), then run on
batches of 1, 5 and 64 rows and compared with the eager model: a model whose computation depends
on the data in a way a trace cannot follow is refused, not written. ``torch.jit.script`` is not
used: the models take a dict of feature groups and call task kinds, which scripting does not
compile. The file carries ``preprocess.json`` as an extra file (``torch.jit.load(path,
_extra_files={"preprocess.json": ""})``), so the output names travel with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.errors import ExportError
from polytask.export.checks import check_outputs, first_line


def export_torchscript(wrapper: torch.nn.Module, example: Sequence[torch.Tensor], checks: Sequence[Sequence[torch.Tensor]],
                       path: Path, output_names: Sequence[str], extra_files: dict[str, str]) -> dict[str, Any]:
    """Trace ``wrapper`` and write it to ``path``; ExportError when tracing fails or the traced
    module does not reproduce PyTorch."""
    expected = [[t.numpy() for t in wrapper.reference(batch)] for batch in checks]
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings: the comparison below decides
            traced = torch.jit.trace(wrapper, tuple(example), check_trace=False)
    except Exception as exc:  # noqa: BLE001 - a model torch.jit.trace cannot follow
        raise ExportError(f"TorchScript: torch.jit.trace failed ({first_line(exc)})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; it still serves
        torch.jit.save(traced, str(path), _extra_files=extra_files)
        loaded = torch.jit.load(str(path))

    @torch.no_grad()
    def run(batch: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [t.numpy() for t in loaded(*(torch.from_numpy(b) for b in batch))]

    check_outputs(run, [[t.numpy() for t in batch] for batch in checks], expected, output_names, "TorchScript (torch.jit.trace)")
    return {"exporter": "torch.jit.trace"}
