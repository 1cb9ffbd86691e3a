"""Small blocks shared by every architecture: MLPs, parallel (batched) MLPs for experts and
towers, gates, task heads and input encoders."""

from polytask.nn.embedding import FusedEmbedding, PerTaskInputs, TabularInput
from polytask.nn.experts import Gates, ParallelLinear, ParallelMLP
from polytask.nn.heads import TaskHeads
from polytask.nn.mlp import MLP

__all__ = ["MLP", "ParallelLinear", "ParallelMLP", "Gates", "TaskHeads", "FusedEmbedding", "TabularInput", "PerTaskInputs"]
