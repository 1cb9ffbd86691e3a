"""Choosing a model's input encoder by name: ``make_input(spec, "tabular" | "cnn", ...)``.

Models expose the choice as two hyperparameters, ``encoder`` (one of :data:`ENCODERS`) and
``encoder_params`` (keyword arguments of the chosen encoder), and build their input block with
:func:`make_input`, so a new encoder needs no change to any model.

* ``tabular`` (default): :class:`~polytask.nn.embedding.TabularInput`; takes no encoder_params
  (its only setting is the model's ``embedding_dim``).
* ``cnn``: :class:`~polytask.nn.image.ImageEncoder` over one image feature (other features are
  concatenated through a TabularInput); encoder_params are its keyword arguments
  (``feature``, ``channels``, ``kernel_size``, ``pool``, ``dim``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from torch import nn

from polytask.data.schema import InputSpec
from polytask.nn.embedding import TabularInput
from polytask.nn.image import ImageEncoder
from polytask.params import validate_params

#: Names accepted by the models' ``encoder`` hyperparameter.
InputEncoderName = Literal["tabular", "cnn"]
ENCODERS: tuple[str, ...] = get_args(InputEncoderName)


def make_input(
    spec: InputSpec,
    encoder: str = "tabular",
    *,
    embedding_dim: int = 4,
    params: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build the input encoder ``encoder`` for ``spec``: a module mapping ``features`` to
    ``[B, out_dim]`` with an ``out_dim`` attribute. ``params`` are the encoder's own keyword
    arguments (checked against its signature: an unknown key or a wrong type is a ConfigError
    naming ``model.encoder_params.<key>``); a spec the encoder cannot read is a ValueError."""
    params = dict(params or {})
    if encoder == "tabular":
        if params:
            raise ValueError(
                f"encoder 'tabular' takes no encoder_params (got {sorted(params)}); its setting is embedding_dim"
            )
        return TabularInput(spec, embedding_dim)
    if encoder == "cnn":
        checked = validate_params(ImageEncoder, params, where="model.encoder_params", skip=("spec", "embedding_dim"))
        return ImageEncoder(spec, embedding_dim=embedding_dim, **checked)
    raise ValueError(f"unknown input encoder {encoder!r}; choose one of: {', '.join(ENCODERS)}")
