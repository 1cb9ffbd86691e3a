"""A task: a named prediction target, its label column, sample space and kind.

Every kind-specific decision is delegated to the task's :class:`~polytask.tasks.base.TaskKind`
instance (``task.spec``); this class holds only what every task has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from polytask.tasks.base import Metric, TaskKind


_MISSING = object()


class Task:
    """One prediction target.

    Args:
        name: the task's name (output key, column name in predictions, metric prefix).
        kind: a registered task kind (``polytask list`` shows them): ``binary``, ``regression``,
            ``multiclass``, ``multilabel``, ``tagging``, ``ranking``, ...
        label: the label column (defaults to ``name``).
        where: sample-space condition on other columns, e.g. ``"click == 1"``; rows where it is
            false are masked out of this task's loss and metrics.
        weight: fixed loss weight used by the ``fixed`` weighting (default 1).
        weight_column: per-row sample weights for this task's loss.
        source: in a run whose data come from several sources (``data.sources``), the source
            whose rows carry this task's labels; rows of every other source are masked out of
            its loss and metrics, whatever their label columns hold.
        **options: the kind's own settings (``num_classes`` for multiclass, ``positive`` for
            binary, ``group`` for ranking, ...), checked against the kind's signature.
    """

    def __init__(
        self,
        name: str,
        kind: str = "binary",
        label: str | None = None,
        where: str | None = None,
        weight: float = 1.0,
        weight_column: str | None = None,
        source: str | None = None,
        **options: Any,
    ) -> None:
        from polytask.errors import ConfigError, PolytaskError
        from polytask.params import validate_params
        from polytask.registry import TASK_KINDS

        try:
            cls = TASK_KINDS.get(kind)
        except KeyError:
            raise ValueError(f"task {name!r}: unknown kind {kind!r}; known: {', '.join(TASK_KINDS.names())}") from None
        self.name = name
        self.kind = kind
        self.label = label if label is not None else name
        self.where = where
        self.weight = weight
        self.weight_column = weight_column
        self.source = source
        checked = validate_params(cls, {k: v for k, v in options.items() if v is not None}, where=f"task {name!r}")
        try:
            self.spec: TaskKind = cls(**checked)
        except PolytaskError:
            raise
        except ValueError as exc:  # an option value the kind refuses
            raise ConfigError(f"task {name!r}: {exc}") from None

    # -- what the kind decides ------------------------------------------------------------------
    @property
    def level(self) -> str:
        return self.spec.level

    @property
    def output_dim(self) -> int:
        return self.spec.output_dim

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric names; the first is the primary one."""
        return self.spec.metric_names()

    def metric(self, name: str) -> Metric:
        return self.spec.metric(name)

    def label_columns(self) -> list[str]:
        return self.spec.label_columns(self)

    def loss(self, output: Tensor, label: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
        return self.spec.loss(output, label, mask, weight)

    def per_example_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        """``[B]`` unweighted loss of every row, NaN where the row is unlabelled."""
        return self.spec.per_example_loss(output, label, mask)

    def predict(self, output: Tensor) -> Tensor:
        return self.spec.predict(output)

    # -- kind options read as attributes (num_classes, classes, positive, ...) ------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "spec":
            raise AttributeError(name)
        spec = self.__dict__.get("spec")
        value = getattr(spec, name, _MISSING) if spec is not None else _MISSING
        if value is not _MISSING and not callable(value):
            return value
        if name in ("num_classes", "classes", "positive"):  # asked of any task: not set for this kind
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "label": self.label}
        if self.where is not None:
            out["where"] = self.where
        out["weight"] = self.weight
        if self.weight_column is not None:
            out["weight_column"] = self.weight_column
        if self.source is not None:
            out["source"] = self.source
        out.update(self.spec.options())
        return out

    def __repr__(self) -> str:
        return f"Task({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and self.to_dict() == other.to_dict()

    __hash__ = object.__hash__
