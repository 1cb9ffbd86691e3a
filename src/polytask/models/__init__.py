"""Registered architectures. Each maps encoded features to ``{task: raw output}``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from polytask.data.schema import InputSpec
from polytask.models import aitm, cross_stitch, dmtrl, drn, dupn, esmm, fafs, jmt, mmoe, ple, shared_bottom, single_task, sluice, soft_sharing  # noqa: F401
from polytask.models.base import MultiTaskModel
from polytask.errors import ConfigError, PolytaskError
from polytask.params import validate_params
from polytask.registry import MODELS
from polytask.tasks import Task


def create_model(name: str, input_spec: InputSpec, tasks: Sequence[Task], params: Mapping[str, Any] | None = None) -> MultiTaskModel:
    """Build a registered model; hyperparameters are checked against its signature first, and a
    value the architecture refuses (a ValueError while it builds) is a ConfigError naming it."""
    cls = MODELS.get(name)
    checked = validate_params(cls, params or {}, where="model", skip=("input_spec", "tasks"))
    try:
        return cls(input_spec, tasks, **checked)
    except PolytaskError:
        raise
    except ValueError as exc:  # a hyperparameter, encoder or task the architecture cannot take
        raise ConfigError(f"model {name!r}: {exc}") from None


__all__ = ["MultiTaskModel", "create_model"]
