"""Universal Dependencies English Web Treebank (UD_English-EWT v2.16): UPOS tagging and dependency
parsing on the same sentences.

Files (in ``<data dir>/ud_english_ewt/``): ``en_ewt-ud-{train,dev,test}.conllu.gz``, the official
release (12,544 / 2,001 / 2,077 sentences). One row per sentence, read by
:func:`polytask.data.text_formats.read_conllu`: every CoNLL-U column as a list column (``words``,
``lemmas``, ``upos``, ``xpos``, ``feats``, ``heads``, ``deprels``, ``deps``, ``misc``) plus
``sent_id``, ``text`` and the lines a CoNLL-U file needs to be written back (comments, multiword
tokens, empty nodes). Only syntactic words (integer IDs) are tokens; multiword tokens (``don't``)
and empty nodes are not.

Tasks: ``upos`` (tagging, the 17 UD tags declared as its classes) and ``deps`` (dependency: head of every word, with the relation
``deprels``). ``xpos`` (PTB tags) is a label column but not a default task: ask for it with a task
``{"name": "xpos", "kind": "tagging", "label": "xpos", "tokens": "words"}``.

The text feature ``words`` is declared as :data:`WORDS_FEATURE` (96 tokens, character 2-4-grams),
the declaration ``conll2000_chunking`` and ``sick2014`` use too, so the three can share one
vocabulary and encoder in one run.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pyarrow as pa

from polytask.data.datasets.base import DatasetBundle
from polytask.data.paths import DataNotFoundError, dataset_dir
from polytask.data.text_formats import read_conllu
from polytask.registry import DATASETS

FOLDER = "ud_english_ewt"
PUBLISHED_AT = "https://github.com/UniversalDependencies/UD_English-EWT"
FILES = {"train": "en_ewt-ud-train.conllu.gz", "validation": "en_ewt-ud-dev.conllu.gz", "test": "en_ewt-ud-test.conllu.gz"}

#: token positions kept per sentence: covers every EWT dev/test sentence (longest 75 / 81 words);
#: 7 of 12,544 training sentences are longer (up to 159 words) and keep their last 96 tokens
MAX_LEN = 96
#: the text feature of the three text datasets (the same options, so they combine in one run)
WORDS_FEATURE: dict[str, Any] = {"name": "words", "max_len": MAX_LEN, "separator": " ", "char_ngrams": [2, 3, 4]}

#: the 17 universal POS tags of UD v2, fixed by the guidelines: declared as the task's classes so a
#: capped training split (``max_rows``) that lacks a rare tag (``X``, ``SYM``) still reads dev/test
UPOS_TAGS: tuple[str, ...] = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ",
    "SYM", "VERB", "X",
)  # fmt: skip

TASKS: list[dict[str, Any]] = [
    {"name": "upos", "kind": "tagging", "label": "upos", "tokens": "words", "classes": list(UPOS_TAGS)},
    {"name": "deps", "kind": "dependency", "label": "heads", "relations": "deprels", "tokens": "words"},
]


def check_max_rows(max_rows: int | None) -> None:
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"max_rows must be a positive integer or None, got {max_rows!r}")


def proportional_cap(table: pa.Table, max_rows: int | None, train_rows: int) -> pa.Table:
    """The first rows of ``table`` in the proportion ``max_rows / train_rows`` (at least one):
    ``max_rows`` caps train, and a held-out split shrinks with it."""
    if max_rows is None or max_rows >= train_rows:
        return table
    return table.slice(0, max(1, math.ceil(table.num_rows * max_rows / train_rows)))


def cap_splits(tables: dict[str, pa.Table], max_rows: int | None) -> tuple[pa.Table, pa.Table, pa.Table]:
    """``(train, validation, test)`` of official splits, ``max_rows`` keeping the first training
    rows and the same share of the other two (:func:`proportional_cap`)."""
    full_train = tables["train"].num_rows
    train = tables["train"] if max_rows is None else tables["train"].slice(0, max_rows)
    return (train, proportional_cap(tables["validation"], max_rows, full_train),
            proportional_cap(tables["test"], max_rows, full_train))


@DATASETS.register("ud_english_ewt")
def ud_english_ewt(data_dir: str | os.PathLike | None = None, max_rows: int | None = None) -> DatasetBundle:
    """UD English-EWT, the official train/dev/test split; ``max_rows`` keeps the first
    ``max_rows`` training sentences and the same share of dev and test (quick runs)."""
    check_max_rows(max_rows)
    folder = dataset_dir(FOLDER, data_dir, published_at=PUBLISHED_AT)
    paths = {split: folder / name for split, name in FILES.items()}
    for path in paths.values():
        if not path.is_file():
            raise DataNotFoundError(f"{path} not found: put the UD_English-EWT release files there ({PUBLISHED_AT})")
    tables = {split: read_conllu(path) for split, path in paths.items()}
    longer = sum(1 for n in tables["train"].column("words").to_pylist() if len(n) > MAX_LEN)
    train, validation, test = cap_splits(tables, max_rows)
    notes = (
        "UD English-EWT v2.16, official split: train = en_ewt-ud-train.conllu, validation = en_ewt-ud-dev.conllu, "
        "test = en_ewt-ud-test.conllu (12,544 / 2,001 / 2,077 sentences), one row per sentence. Tokens are the "
        "syntactic words (integer IDs); multiword tokens and empty nodes are kept only to write CoNLL-U back. "
        f"Text feature 'words' keeps {MAX_LEN} tokens per sentence: every dev and test sentence fits (longest 75 "
        f"and 81 words); {longer} training sentence(s) are longer and keep their last {MAX_LEN} tokens (the "
        "tags and heads of their first tokens are not trained on). Tasks: upos (tagging), deps (dependency heads "
        "with deprels relations). License: CC BY-SA 4.0 (annotations); texts from LDC2012T13."
    )
    if max_rows is not None:
        notes += (
            f" Capped with max_rows={max_rows}: the first {train.num_rows} training sentences and the first "
            f"{validation.num_rows} dev / {test.num_rows} test sentences (the same share of each file)."
        )
    return DatasetBundle(
        train=train,
        validation=validation,
        test=test,
        features={"sequence": [dict(WORDS_FEATURE)]},
        tasks=[dict(t) for t in TASKS],
        notes=notes,
        sources={split: str(path) for split, path in paths.items()},
    )
