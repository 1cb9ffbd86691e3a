"""Built-in datasets, registered by name in :data:`polytask.registry.DATASETS`."""

from polytask.data.datasets import (  # noqa: F401
    ali_ccp,
    aliexpress,
    census_income,
    entire_space,
    movielens,
    multi_mnist,
    synthetic_mmoe,
)
from polytask.data.datasets.base import DatasetBundle

__all__ = ["DatasetBundle"]
