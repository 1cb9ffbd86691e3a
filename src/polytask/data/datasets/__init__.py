"""Built-in datasets, registered by name in :data:`polytask.registry.DATASETS`."""

from polytask.data.datasets import (  # noqa: F401
    ali_ccp,
    aliexpress,
    census_income,
    conll2000_chunking,
    entire_space,
    movielens,
    multi_fashion,
    multi_mnist,
    sick2014,
    synthetic_mmoe,
    ud_english_ewt,
    utkface,
)
from polytask.data.datasets.base import DatasetBundle

__all__ = ["DatasetBundle"]
