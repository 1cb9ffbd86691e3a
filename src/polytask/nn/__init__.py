"""Small blocks shared by every architecture: MLPs, conv blocks, parallel (batched) MLPs for experts and
towers, gates, task heads, per-task columns and the fused embedding table.

Input encoders (``tabular``, ``cnn``, ``tokens``, ...) live in :mod:`polytask.encoders`; the
names they had here are still importable from this package.
"""

from typing import Any

from polytask.nn.conv import ConvBlock
from polytask.nn.embedding import FusedEmbedding
from polytask.nn.experts import Gates, ParallelLinear, ParallelMLP
from polytask.nn.heads import TaskHeads
from polytask.nn.mlp import MLP

_MOVED = {"TabularInput", "PerTaskInputs", "ImageEncoder", "make_input"}


def __getattr__(name: str) -> Any:  # the encoders moved to polytask.encoders (which imports this package)
    if name in _MOVED:
        import polytask.encoders

        return getattr(polytask.encoders, name)
    raise AttributeError(f"module 'polytask.nn' has no attribute {name!r}")


__all__ = ["MLP", "ParallelLinear", "ParallelMLP", "Gates", "TaskHeads", "FusedEmbedding", "ConvBlock"]
