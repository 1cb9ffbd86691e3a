"""CoNLL-2000 text chunking (WSJ): chunk tags (IOB2) and PTB part-of-speech tags on the same tokens.

Files (in ``<data dir>/conll2000_chunking/``): ``train.txt.gz`` (WSJ sections 15-18, 8,936
sentences) and ``test.txt.gz`` (section 20, 2,012 sentences), the official shared-task files, one
``WORD POS CHUNK`` line per token (read by :func:`polytask.data.text_formats.read_conll_columns`);
one row per sentence with list columns ``words``, ``pos``, ``chunk``.

**Validation.** CoNLL-2000 has no development set: by default a seeded ``validation_fraction`` of
the training sentences is held out (the rest stay training sentences, in file order).
``dev.txt.gz`` in the data folder was shipped by UKPLab, not by CoNLL-2000, and its origin is
undocumented (a few of its sentences also occur in train and test): it is used only with
``official_dev=True`` (then train is the whole training file).

Tasks: ``chunk`` (tagging, BIO scheme: span F1) and ``pos`` (tagging). The text feature is
:data:`~polytask.data.datasets.ud_english_ewt.WORDS_FEATURE`, the same as UD English-EWT and SICK.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from polytask.data.datasets.base import DatasetBundle
from polytask.data.datasets.ud_english_ewt import MAX_LEN, WORDS_FEATURE, check_max_rows, proportional_cap
from polytask.data.paths import DataNotFoundError, dataset_dir
from polytask.data.text_formats import read_conll_columns
from polytask.registry import DATASETS

FOLDER = "conll2000_chunking"
PUBLISHED_AT = "https://www.clips.uantwerpen.be/conll2000/chunking/"
FILES = {"train": "train.txt.gz", "test": "test.txt.gz", "dev": "dev.txt.gz"}
COLUMNS = ["words", "pos", "chunk"]

TASKS: list[dict[str, Any]] = [
    {"name": "chunk", "kind": "tagging", "label": "chunk", "tokens": "words", "scheme": "bio"},
    {"name": "pos", "kind": "tagging", "label": "pos", "tokens": "words"},
]


def hold_out(table: pa.Table, fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """``(train, validation)``: ``round(fraction * rows)`` (at least one) rows chosen by a
    ``numpy.random.default_rng(seed)`` permutation become validation; both keep file order."""
    n = table.num_rows
    k = min(max(1, round(fraction * n)), n - 1)
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).permutation(n)[:k]] = True
    return table.filter(pa.array(~chosen)), table.filter(pa.array(chosen))


@DATASETS.register("conll2000_chunking")
def conll2000_chunking(
    data_dir: str | os.PathLike | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    max_rows: int | None = None,
    official_dev: bool = False,
) -> DatasetBundle:
    """CoNLL-2000 chunking and POS tagging; validation held out of train (``validation_fraction``,
    ``seed``) unless ``official_dev``; ``max_rows`` keeps the first ``max_rows`` training
    sentences (before validation is held out) and the same share of test (and dev)."""
    check_max_rows(max_rows)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    folder = dataset_dir(FOLDER, data_dir, published_at=PUBLISHED_AT)
    needed = ["train", "test"] + (["dev"] if official_dev else [])
    paths = {split: folder / FILES[split] for split in needed}
    for path in paths.values():
        if not path.is_file():
            raise DataNotFoundError(f"{path} not found: put the CoNLL-2000 chunking files there ({PUBLISHED_AT})")
    tables = {split: read_conll_columns(path, COLUMNS) for split, path in paths.items()}
    full_train = tables["train"].num_rows
    train = tables["train"] if max_rows is None else tables["train"].slice(0, max_rows)
    test = proportional_cap(tables["test"], max_rows, full_train)
    capped = "" if max_rows is None else f" (capped with max_rows={max_rows}: the first {train.num_rows} sentences)"
    if official_dev:
        validation = proportional_cap(tables["dev"], max_rows, full_train)
        how = (
            f"train = train.txt, all {train.num_rows} sentences{capped}; validation = dev.txt ({validation.num_rows} "
            "sentences) as shipped by UKPLab (emnlp2017-bilstm-cnn-crf): NOT part of the CoNLL-2000 release and "
            "of undocumented origin (38 of its sentences also occur in train, 5 in test)"
        )
        sources = {"train": str(paths["train"]), "validation": str(paths["dev"]), "test": str(paths["test"])}
    else:
        n_train = train.num_rows
        train, validation = hold_out(train, validation_fraction, seed)
        how = (
            f"train/validation = train.txt{capped} split by sentence: {validation.num_rows} of {n_train} sentences "
            f"(validation_fraction={validation_fraction}) chosen by numpy default_rng(seed={seed}).permutation are "
            f"validation, the other {train.num_rows} train (both in file order); the shipped dev.txt (undocumented "
            "origin) is not used"
        )
        sources = {"train": str(paths["train"]), "validation": f"{paths['train']} (held out)", "test": str(paths["test"])}
    notes = (
        f"CoNLL-2000 chunking (WSJ). {how}; test = test.txt (official, WSJ section 20, {test.num_rows} sentences). "
        f"One row per sentence; text feature 'words' keeps {MAX_LEN} tokens (no CoNLL-2000 sentence is longer: "
        "78 words at most). Tasks: chunk (tagging, IOB2, span F1) and pos (PTB tags). License: none stated; WSJ "
        "text is LDC material (research use)."
    )
    return DatasetBundle(
        train=train,
        validation=validation,
        test=test,
        features={"sequence": [dict(WORDS_FEATURE)]},
        tasks=[dict(t) for t in TASKS],
        notes=notes,
        sources=sources,
    )
