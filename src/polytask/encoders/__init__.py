"""Input encoders: the batch's feature tensors -> rows a model's body reads.

Registered by name in :data:`polytask.registry.ENCODERS`; every architecture takes
``encoder: <name>`` and ``encoder_params: {...}``. Built in: ``tabular`` (one row per example from
every feature, the default), ``cnn`` (a convolutional network over an image feature), ``resnet``
(a residual network over an image feature: torchvision's ResNet-18/34/50 or a small one, optionally
from a weights file) and ``tokens`` (a BiLSTM or Transformer over a text feature: a sentence row
plus one row per token).
See :mod:`polytask.encoders.base` for the row layout.
"""

from polytask.encoders import cnn, resnet, tabular, tokens  # noqa: F401 - registers the built-in encoders
from polytask.encoders.base import InputEncoder, PerTaskInputs, make_input, read_out
from polytask.encoders.cnn import ImageEncoder
from polytask.encoders.resnet import ResNetEncoder
from polytask.encoders.tabular import TabularInput
from polytask.encoders.tokens import TokenEncoder

__all__ = ["InputEncoder", "PerTaskInputs", "make_input", "read_out", "TabularInput", "ImageEncoder", "ResNetEncoder", "TokenEncoder"]
