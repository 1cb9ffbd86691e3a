"""Input encoders: the batch's feature tensors -> rows a model's body reads.

Registered by name in :data:`polytask.registry.ENCODERS`; every architecture takes
``encoder: <name>`` and ``encoder_params: {...}``. See :mod:`polytask.encoders.base`.
"""

from polytask.encoders import cnn, tabular  # noqa: F401 - registers the built-in encoders
from polytask.encoders.base import InputEncoder, PerTaskInputs, make_input, read_out
from polytask.encoders.cnn import ImageEncoder
from polytask.encoders.tabular import TabularInput

__all__ = ["InputEncoder", "PerTaskInputs", "make_input", "read_out", "TabularInput", "ImageEncoder"]
