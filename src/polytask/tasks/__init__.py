"""Tasks and task kinds.

A :class:`Task` names a target; its kind (one file per kind, registered in
``polytask.registry.TASK_KINDS``) owns label encoding, output width, loss, metrics with their
directions and prediction formatting. See :mod:`polytask.tasks.base` for the contract.
"""

from polytask.tasks import binary, multiclass, regression  # noqa: F401 - registers the built-in kinds
from polytask.tasks import multilabel, ranking, tagging  # noqa: F401 - multi-label, learning to rank, sequence tagging
from polytask.tasks import dependency, relatedness  # noqa: F401 - dependency parsing (head selection), semantic relatedness
from polytask.tasks.base import LEVELS, Metric, TaskKind, masked_mean, row_count
from polytask.tasks.task import Task

__all__ = ["Task", "TaskKind", "Metric", "masked_mean", "row_count", "LEVELS"]
