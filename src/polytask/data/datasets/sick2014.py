"""SICK (SemEval-2014 Task 1): semantic relatedness and textual entailment of sentence pairs.

Files (in ``<data dir>/sick2014/``): ``SICK_train.txt.gz`` (4,500 pairs), ``SICK_trial.txt.gz``
(500) and ``SICK_test_annotated.txt.gz`` (4,927; CRLF line endings), tab-separated with a header
``pair_ID sentence_A sentence_B relatedness_score entailment_judgment``.

One row per pair: ``pair_id`` (int64), ``words`` and ``words_b`` (sentence A and B split on
whitespace, case kept: SICK's sentences are already tokenised and hold almost no punctuation),
``relatedness`` (float32, 1-5) and ``entailment`` (``NEUTRAL``, ``ENTAILMENT`` or
``CONTRADICTION``). ``words`` is declared as
:data:`~polytask.data.datasets.ud_english_ewt.WORDS_FEATURE` (shared with UD English-EWT and
CoNLL-2000) and ``words_b`` with the same options and ``vocabulary: words``, so a word has one id
in both sentences.

License: CC BY-NC-SA 3.0, non-commercial use only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from polytask.data.datasets.base import DatasetBundle
from polytask.data.datasets.ud_english_ewt import MAX_LEN, WORDS_FEATURE, cap_splits, check_max_rows
from polytask.data.paths import DataNotFoundError, dataset_dir
from polytask.data.text_formats import read_lines
from polytask.errors import DataError
from polytask.registry import DATASETS

FOLDER = "sick2014"
PUBLISHED_AT = "SemEval-2014 Task 1 (Marelli et al., LREC 2014); a copy: github.com/brmson/dataset-sts, data/sts/sick2014"
FILES = {"train": "SICK_train.txt.gz", "validation": "SICK_trial.txt.gz", "test": "SICK_test_annotated.txt.gz"}
HEADER = ["pair_ID", "sentence_A", "sentence_B", "relatedness_score", "entailment_judgment"]
JUDGEMENTS = ("NEUTRAL", "ENTAILMENT", "CONTRADICTION")

TASKS: list[dict[str, Any]] = [
    {"name": "relatedness", "kind": "relatedness", "label": "relatedness", "low": 1, "high": 5},
    {"name": "entailment", "kind": "multiclass", "label": "entailment"},
]


def read_sick(path: str | os.PathLike) -> pa.Table:
    """One SICK file (gzipped or not; LF or CRLF) as a table of pairs; a malformed line is a
    DataError naming the file and the 1-based line."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found: put the SICK files there ({PUBLISHED_AT})")
    ids: list[int] = []
    words_a: list[list[str]] = []
    words_b: list[list[str]] = []
    scores: list[float] = []
    labels: list[str] = []
    header_seen = False
    for number, line in read_lines(path):
        if not header_seen:
            if line.split("\t") != HEADER:
                raise DataError(f"{path}: line {number}: expected the header {' '.join(HEADER)!r}, got {line[:80]!r}")
            header_seen = True
            continue
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(HEADER):
            raise DataError(f"{path}: line {number}: {len(fields)} tab-separated field(s), expected {len(HEADER)} ({', '.join(HEADER)})")
        pair, a, b, score, judgement = fields
        try:
            pair_id = int(pair)
        except ValueError:
            raise DataError(f"{path}: line {number}: pair_ID {pair!r} is not an integer") from None
        try:
            value = float(score)
        except ValueError:
            raise DataError(f"{path}: line {number}: relatedness_score {score!r} is not a number") from None
        if not 1.0 <= value <= 5.0:
            raise DataError(f"{path}: line {number}: relatedness_score {value} is outside 1..5")
        if judgement not in JUDGEMENTS:
            raise DataError(f"{path}: line {number}: entailment_judgment {judgement!r} is not one of {', '.join(JUDGEMENTS)}")
        tokens_a, tokens_b = a.split(), b.split()
        if not tokens_a or not tokens_b:
            raise DataError(f"{path}: line {number}: sentence_{'A' if not tokens_a else 'B'} is empty")
        ids.append(pair_id)
        words_a.append(tokens_a)
        words_b.append(tokens_b)
        scores.append(value)
        labels.append(judgement)
    if not header_seen:
        raise DataError(f"{path}: file is empty")
    if not ids:
        raise DataError(f"{path}: no sentence pairs after the header")
    return pa.table({
        "pair_id": pa.array(ids, pa.int64()),
        "words": pa.array(words_a, pa.list_(pa.string())),
        "words_b": pa.array(words_b, pa.list_(pa.string())),
        "relatedness": pa.array(scores, pa.float32()),
        "entailment": pa.array(labels, pa.string()),
    })


@DATASETS.register("sick2014")
def sick2014(data_dir: str | os.PathLike | None = None, max_rows: int | None = None) -> DatasetBundle:
    """SICK: train = SICK_train, validation = SICK_trial, test = SICK_test_annotated;
    ``max_rows`` keeps the first ``max_rows`` training pairs and the same share of the others."""
    check_max_rows(max_rows)
    folder = dataset_dir(FOLDER, data_dir, published_at=PUBLISHED_AT)
    paths = {split: folder / name for split, name in FILES.items()}
    tables = {split: read_sick(path) for split, path in paths.items()}
    train, validation, test = cap_splits(tables, max_rows)
    notes = (
        "SICK (SemEval-2014 Task 1), the official files: train = SICK_train.txt (4,500 pairs), validation = "
        "SICK_trial.txt (500), test = SICK_test_annotated.txt (4,927). Sentences split on whitespace, case kept; "
        f"'words' (sentence A) and 'words_b' (sentence B, sharing the vocabulary of 'words') keep {MAX_LEN} tokens "
        "(no SICK sentence is longer: 32 words at most). Tasks: relatedness (score 1-5) and entailment (NEUTRAL / "
        "ENTAILMENT / CONTRADICTION). License: CC BY-NC-SA 3.0 (Creative Commons Attribution-NonCommercial-"
        "ShareAlike 3.0 Unported): non-commercial use only."
    )
    if max_rows is not None:
        notes += (
            f" Capped with max_rows={max_rows}: the first {train.num_rows} training, {validation.num_rows} "
            f"validation and {test.num_rows} test pairs."
        )
    return DatasetBundle(
        train=train,
        validation=validation,
        test=test,
        features={"sequence": [dict(WORDS_FEATURE), {**WORDS_FEATURE, "name": "words_b", "vocabulary": "words"}]},
        tasks=[dict(t) for t in TASKS],
        notes=notes,
        sources={split: str(path) for split, path in paths.items()},
    )
