"""Training loop, optimisers and schedulers, early stopping."""

from polytask.train.trainer import Trainer

__all__ = ["Trainer"]
