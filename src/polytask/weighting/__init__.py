"""Registered loss-weighting and gradient methods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from polytask.params import validate_params
from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting import aligned_mtl, cagrad, dwa, equal, famo, fixed, gls, graddrop, gradnorm, gradvac, imtl, mgda, nash_mtl, pcgrad, rlw, uncertainty, upgrad  # noqa: F401 - registers the methods
from polytask.weighting.base import StepContext, Weighting
from polytask.weighting.equal import Equal
from polytask.weighting.fixed import Fixed


def create_weighting(name: str, tasks: Sequence[Task], params: Mapping[str, Any] | None = None) -> Weighting:
    """Build a registered weighting; parameters are checked against its signature first."""
    cls = WEIGHTINGS.get(name)
    checked = validate_params(cls, params or {}, where="weighting", skip=("tasks",))
    return cls(tasks, **checked)


__all__ = ["Weighting", "StepContext", "Equal", "Fixed", "create_weighting"]
