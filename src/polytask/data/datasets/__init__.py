"""Built-in datasets, registered by name in :data:`polytask.registry.DATASETS`."""

from polytask.data.datasets import census_income, multi_mnist, synthetic_mmoe  # noqa: F401
from polytask.data.datasets.base import DatasetBundle

__all__ = ["DatasetBundle"]
