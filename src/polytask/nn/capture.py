"""Whether a model is being captured into a graph (traced, compiled or exported).

Blocks that read a size from the data to save work, or keep Python-side records for diagnostics,
behave differently then: a graph cannot hold a data-dependent size or a Python side effect.
"""

from __future__ import annotations

import torch


def capturing() -> bool:
    """True while ``torch.jit.trace``, ``torch.compile``/``torch.export`` or the ONNX exporter runs
    the model."""
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())
