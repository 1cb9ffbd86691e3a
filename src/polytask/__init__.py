"""polytask: multi-task learning on PyTorch.

``import polytask`` stays light: the heavy parts (torch models, trainer) load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "fit": ("polytask.api", "fit"),
    "load_run": ("polytask.api", "load_run"),
    "Trainer": ("polytask.train.trainer", "Trainer"),
    "Config": ("polytask.config", "Config"),
    "Task": ("polytask.tasks", "Task"),
    "MODELS": ("polytask.registry", "MODELS"),
    "WEIGHTINGS": ("polytask.registry", "WEIGHTINGS"),
    "DATASETS": ("polytask.registry", "DATASETS"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'polytask' has no attribute {name!r}")
