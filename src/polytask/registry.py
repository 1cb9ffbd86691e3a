"""Name -> class registries: models, weightings, datasets, task kinds, input encoders, column families,
loggers.

Config files name things (``model: mmoe``); the registries resolve those names, list what exists
(``polytask list``) and drive the contract tests, which iterate over every registered model and
weighting instead of a hand-kept list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of constructors with a one-line description each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@MODELS.register("mmoe")``."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name in self._items:  # registered already: no need to import every built-in module
            return self._items[name]
        _load_builtins()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def names(self) -> list[str]:
        _load_builtins()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        _load_builtins()
        return iter(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        _load_builtins()
        return name in self._items

    def describe(self, name: str) -> str:
        """The first paragraph of the registered object's docstring, on one line."""
        doc = getattr(self.get(name), "__doc__", None) or ""
        first_paragraph = doc.strip().split("\n\n")[0]
        return " ".join(line.strip() for line in first_paragraph.splitlines())


MODELS: Registry = Registry("model")
WEIGHTINGS: Registry = Registry("weighting")
DATASETS: Registry = Registry("dataset")
TASK_KINDS: Registry = Registry("task kind")
ENCODERS: Registry = Registry("encoder")
COLUMNS: Registry = Registry("column family")
LOGGERS: Registry = Registry("logger")

_loaded = False


def _load_builtins() -> None:
    """Import the built-in modules once so their ``@register`` decorators run (keeps
    ``import polytask`` light: nothing heavy is imported until a registry is consulted)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import polytask.data.datasets  # noqa: F401
    import polytask.encoders  # noqa: F401
    import polytask.nn.columns  # noqa: F401
    import polytask.tasks  # noqa: F401
    import polytask.models  # noqa: F401
    import polytask.weighting  # noqa: F401
    import polytask.train.loggers  # noqa: F401
