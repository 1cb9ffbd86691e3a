"""Small blocks shared by every architecture: MLPs, parallel (batched) MLPs for experts and
towers, gates, task heads and input encoders (tabular, image; chosen by name with make_input)."""

from polytask.nn.embedding import FusedEmbedding, PerTaskInputs, TabularInput
from polytask.nn.experts import Gates, ParallelLinear, ParallelMLP
from polytask.nn.heads import TaskHeads
from polytask.nn.image import ImageEncoder
from polytask.nn.inputs import ENCODERS, InputEncoderName, make_input
from polytask.nn.mlp import MLP

__all__ = ["MLP", "ParallelLinear", "ParallelMLP", "Gates", "TaskHeads", "FusedEmbedding", "TabularInput", "PerTaskInputs",
           "ImageEncoder", "make_input", "ENCODERS", "InputEncoderName"]
