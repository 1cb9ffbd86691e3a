"""Ali-CCP (Alibaba Click and Conversion Prediction), the public data set of ESMM (Ma et al., SIGIR 2018).

Tasks (the ESMM triple, see :mod:`polytask.data.datasets._ctcvr`): ``ctr`` (label ``click``, all
impressions), ``cvr`` (label ``purchase`` where ``click == 1``: the clicked space) and ``ctcvr``
(label ``ctcvr`` = ``click AND purchase``, all impressions; derived as a new int8 column when the
file has none). ``click``, ``purchase`` and ``ctcvr`` are int8 0/1.

Three public formats are read (``format="auto"`` tells them apart from the file names and first line):

* **torch-rechub CSV** (``format="rechub"``): :mod:`~polytask.data.datasets.ali_ccp_formats.rechub`;
* **PaddleRec ESMM lines** (``format="paddlerec"``): :mod:`~polytask.data.datasets.ali_ccp_formats.paddlerec`;
* **Alibaba's raw Tianchi files** (``format="tianchi"``): :mod:`~polytask.data.datasets.ali_ccp_formats.tianchi`.

Each of those modules documents its format (layout, checks, what is kept); this one tells them apart,
finds the files of each split and builds the dataset.

Field meanings (as recalled from the Ali-CCP description on Tianchi, dataId 408; unverified here):
101 user id; 121/122 user profile category/stage; 124 gender; 125 age; 126/127 consumption level
1/2; 128 occupation; 129 geography; 109_14/110_14/127_14/150_14 the user's category/shop/brand/
intention-node behaviour histories; 205 item id; 206 item category; 207 shop; 210 intention node;
216 brand; 508/509/702/853 combinations of 109_14 x 206, 110_14 x 207, 127_14 x 216, 150_14 x 210;
301 a categorical expression of the position.

Splits: the train/validation/test files found are used as given. A split without a file is carved
out of the train file by a seeded random split (``validation_fraction``/``test_fraction`` of its
rows, ``split_seed``); a single file (``path`` naming a file) is split three ways. PaddleRec and the
raw files ship only train and test, so their validation split always comes out of train. ``notes`` says what was done.

The samples in ``<data dir>/ali_ccp_samples`` (``torch_rechub``: 100/50/50 rows; ``paddlerec_esmm``:
10 + 10 lines) are smoke-test size only. NB: PaddleRec's ``test/small.txt`` is its
``train/small.txt`` with the labels of line 1 changed (1,1 -> 0,0): its "test" rows are training
rows. Pointing ``path`` at the full files (a folder holding them, or one file) is all that is
needed for the full data.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import pyarrow as pa

from polytask.data.datasets._ctcvr import (
    check_fraction,
    check_max_rows,
    esmm_tasks,
    first_line,
    label_summary,
    resolve_path,
    split_indices,
    with_ctcvr,
)
from polytask.data.datasets.ali_ccp_formats.paddlerec import looks_paddlerec, paddlerec_files, read_paddlerec
from polytask.data.datasets.ali_ccp_formats.rechub import (
    RECHUB_CATEGORICAL,
    RECHUB_COLUMNS,
    RECHUB_NUMERIC,
    looks_rechub,
    read_rechub,
    rechub_files,
)
from polytask.data.datasets.ali_ccp_formats.shared import (
    LABELS,
    PADDLEREC_CATEGORICAL,
    PADDLEREC_FIELDS,
    PADDLEREC_SEQUENCE,
    PUBLISHED_AT,
    merge_longest,
)
from polytask.data.datasets.ali_ccp_formats.tianchi import (
    COMMON,
    SKELETON,
    common_file,
    looks_tianchi,
    read_tianchi,
    tianchi_files,
)
from polytask.data.datasets.base import DatasetBundle
from polytask.data.paths import DataNotFoundError
from polytask.errors import DataError
from polytask.registry import DATASETS

__all__ = [
    "LABELS", "PADDLEREC_CATEGORICAL", "PADDLEREC_FIELDS", "PADDLEREC_SEQUENCE", "PUBLISHED_AT", "RECHUB_CATEGORICAL",
    "RECHUB_COLUMNS", "RECHUB_NUMERIC", "ali_ccp",
]  # fmt: skip

PAPER = "Ma et al., SIGIR 2018 (ESMM), Ali-CCP public data set"
DEFAULT_PATH = "ali_ccp_samples/torch_rechub"


# -- format detection and files ------------------------------------------------------------------
def _sniff(path: Path) -> str:
    line = first_line(path)
    skeleton, common = looks_tianchi(line)
    if skeleton:
        return "tianchi"
    if common:
        raise DataError(
            f"{path}: this is a common_features file of Alibaba's raw Ali-CCP data: point path at its "
            f"{SKELETON}<split>.csv file or at the folder holding both"
        )
    if looks_paddlerec(line):
        return "paddlerec"
    if looks_rechub(line):
        return "rechub"
    raise DataError(
        f"{path}: cannot tell the Ali-CCP format from the first line {line[:80]!r}: expected a torch-rechub "
        "CSV header (click,purchase,101,...), PaddleRec lines (sample_id,click,conversion,field:id,...) or Alibaba's "
        "raw sample_skeleton lines (sample_id,click,conversion,common_feature_index,feature_num,feature_list)"
    )


def _check(format: str, validation_fraction: float, test_fraction: float, max_rows: int | None) -> None:
    if format not in ("auto", "rechub", "paddlerec", "tianchi"):
        raise ValueError(f"format must be 'auto', 'rechub', 'paddlerec' or 'tianchi', got {format!r}")
    check_fraction("validation_fraction", validation_fraction)
    check_fraction("test_fraction", test_fraction, allow_zero=True)
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            "validation_fraction + test_fraction must be < 1 (the rest is train), "
            f"got {validation_fraction!r} + {test_fraction!r}"
        )
    check_max_rows(max_rows)


def _locate(target: Path, format: str) -> tuple[str, dict[str, list[Path]]]:
    """(format, {split: files}) for a file or folder."""
    if target.is_file():
        fmt = _sniff(target) if format == "auto" else format
        if fmt == "tianchi":
            common_file(target)  # fails now, not after reading the impressions, when it is missing
        return fmt, {"train": [target], "validation": [], "test": []}
    if format in ("auto", "rechub"):
        rechub = rechub_files(target)
        if rechub["train"] is not None:
            return "rechub", {s: [p] if p is not None else [] for s, p in rechub.items()}
        if format == "rechub":
            raise DataNotFoundError(
                f"{target} holds no ali_ccp_train*.csv: put torch-rechub's Ali-CCP CSVs there (ali_ccp_{{train,val,test}}.csv)"
            )
    if format in ("auto", "tianchi"):
        raw = tianchi_files(target)
        if raw["train"]:
            for p in (*raw["train"], *raw["test"]):
                common_file(p)
            return "tianchi", raw
        if format == "tianchi" or raw["test"]:
            raise DataNotFoundError(
                f"{target} holds no {SKELETON}train.csv (nor sample_train/{SKELETON}train.csv): put Alibaba's raw "
                f"Ali-CCP files there ({SKELETON}{{train,test}}.csv and {COMMON}{{train,test}}.csv, {PUBLISHED_AT})"
            )
    paddle = paddlerec_files(target)
    if not paddle["train"]:
        raise DataNotFoundError(
            f"{target} holds no Ali-CCP files: expected torch-rechub CSVs (ali_ccp_train*.csv, ali_ccp_val*.csv, "
            "ali_ccp_test*.csv), PaddleRec ESMM files (train*.txt / train/ / train_data/ and test*.txt / test/ / "
            f"test_data/) or Alibaba's raw files ({SKELETON}{{train,test}}.csv with {COMMON}{{train,test}}.csv). "
            f"Published at {PUBLISHED_AT}."
        )
    if format == "auto":
        kinds = {_sniff(p) for p in paddle["train"]}
        if kinds != {"paddlerec"}:
            raise DataError(f"{target}: train files {[p.name for p in paddle['train']]} are not PaddleRec ESMM lines")
    return "paddlerec", paddle


@DATASETS.register("ali_ccp")
def ali_ccp(
    data_dir: str | os.PathLike | None = None,
    *,
    path: str | None = None,
    format: Literal["auto", "rechub", "paddlerec", "tianchi"] = "auto",
    split_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    tasks: list[str] | None = None,
    max_rows: int | None = None,
    sequence_max_len: int = 50,
) -> DatasetBundle:
    """Ali-CCP (ESMM, SIGIR 2018): ctr, cvr (clicked space), ctcvr; torch-rechub CSV, PaddleRec lines
    or Alibaba's raw Tianchi files.

    ``path``: a folder or one file (default ``<data dir>/ali_ccp_samples/torch_rechub``; a relative
    path is looked up in the data directory when it does not exist from the working directory). For
    the raw files: the folder holding ``sample_skeleton_{train,test}.csv`` and
    ``common_features_{train,test}.csv`` (or their ``sample_train/``, ``sample_test/`` sub-folders),
    or one ``sample_skeleton_*.csv`` file (its ``common_features_*.csv`` must lie beside it).
    ``format``: ``auto`` (from the file names and first line), ``rechub``, ``paddlerec`` or
    ``tianchi`` (the raw files; same table as ``paddlerec``). Splits: the given train/val/test
    files; a split without a file is a seeded part (``split_seed``) of train with
    ``validation_fraction``/``test_fraction`` of its rows (``test_fraction=0``: no test split
    then). ``tasks``: a subset of ``["ctr", "cvr", "ctcvr"]``. ``max_rows``: read only the first
    ``max_rows`` rows of each file (a prefix, not a random sample; for the raw files: of each
    sample_skeleton file, whose common blocks are then looked up). ``sequence_max_len``: PaddleRec
    and raw formats: how many ids of each multi-valued field are kept (the last ones, in file order).
    """
    _check(format, validation_fraction, test_fraction, max_rows)
    if isinstance(sequence_max_len, bool) or int(sequence_max_len) != sequence_max_len or sequence_max_len < 1:
        raise ValueError(f"sequence_max_len must be an integer >= 1, got {sequence_max_len!r}")
    task_dicts = esmm_tasks(tasks, click="click", conversion="purchase")
    target = resolve_path(path, data_dir, DEFAULT_PATH, what="ali_ccp", published_at=PUBLISHED_AT)
    fmt, files = _locate(target, format)

    extra: list[str] = []
    unknown: set[str] = set()
    longest: dict[str, int] = {}
    orphans = 0
    blocks: list[str] = []
    tables: dict[str, pa.Table | None] = {}
    for split, paths in files.items():
        if not paths:
            tables[split] = None
            continue
        parts = []
        for p in paths:
            if fmt == "rechub":
                t, more = read_rechub(p, max_rows)
                extra.extend(c for c in more if c not in extra)
            else:
                t, info = (read_paddlerec if fmt == "paddlerec" else read_tianchi)(p, max_rows)
                unknown.update(info["unknown"])  # type: ignore[arg-type]
                merge_longest(longest, info["longest"])  # type: ignore[arg-type]
                if fmt == "tianchi":
                    blocks.append(f"{p.name}: {info['blocks']} block(s) from {info['common']}")
            t, orphan = with_ctcvr(t, p, click="click", conversion="purchase")
            orphans += orphan
            parts.append(t)
        tables[split] = pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    sources = {
        s: ", ".join(f"{p} + {common_file(p)}" if fmt == "tianchi" else str(p) for p in ps) for s, ps in files.items() if ps
    }
    carved = [s for s in ("validation", "test") if tables[s] is None and (s == "validation" or test_fraction > 0)]
    train = tables["train"]
    assert train is not None
    if carved:
        fractions = [validation_fraction if s == "validation" else test_fraction for s in carved]
        index = split_indices(train.num_rows, fractions, split_seed)
        if any(len(ix) == 0 for ix in index):
            raise DataError(
                f"{sources['train']}: {train.num_rows} rows are too few for a seeded split with "
                f"fractions {dict(zip(carved, fractions))} (a part would be empty)"
            )
        for s, ix, f in zip(carved, index[1:], fractions):
            tables[s] = train.take(pa.array(ix))
            sources[s] = f"{sources['train']} (seeded {f:g} {s} part, split_seed={split_seed})"
        train = train.take(pa.array(index[0]))
        sources["train"] = f"{sources['train']} (rest after the seeded split, split_seed={split_seed})"
    tables["train"] = train
    validation = tables["validation"]
    assert validation is not None

    if fmt == "rechub":
        features = {"numeric": list(RECHUB_NUMERIC), "categorical": list(RECHUB_CATEGORICAL)}
        fmt_note = (
            f"torch-rechub CSV: {len(RECHUB_CATEGORICAL)} label-encoded field columns as categorical, "
            f"{len(RECHUB_NUMERIC)} D* statistics as numeric"
            + (f"; columns not used: {extra}" if extra else "")
        )
    else:
        features = {
            "categorical": list(PADDLEREC_CATEGORICAL),
            "sequence": [{"name": f, "max_len": int(sequence_max_len)} for f in PADDLEREC_SEQUENCE],
        }
        long = {k: v for k, v in longest.items() if v > sequence_max_len}
        layout = (
            "PaddleRec ESMM lines (sample_id,click,conversion,field:id,...)"
            if fmt == "paddlerec"
            else "Alibaba's raw files: each sample_skeleton line's features plus the common_features block its "
            f"common_feature_index names ({'; '.join(blocks)}), feature values (after \\x03) dropped"
        )
        fmt_note = (
            f"{layout}: {len(PADDLEREC_CATEGORICAL)} single-valued "
            f"fields as categorical, {len(PADDLEREC_SEQUENCE)} multi-valued fields as sequence (list<int64>, file order); "
            "sample_id kept, not a feature"
            + (f"; ignored unknown fields {sorted(unknown)}" if unknown else "")
            + (
                f"; longest lists {long} exceed sequence_max_len={sequence_max_len} (only the last "
                f"{sequence_max_len} ids of a field are kept)"
                if long else ""
            )
        )
    kept = [*[c if isinstance(c, str) else c["name"] for cols in features.values() for c in cols], "click", "purchase", "ctcvr"]
    if fmt in ("paddlerec", "tianchi"):
        kept = ["sample_id", *kept]
    out = {s: (t.select(kept) if t is not None else None) for s, t in tables.items()}
    given = [s for s, ps in files.items() if ps]
    protocol = (
        f"splits from files: {', '.join(given)}"
        + (f"; seeded split of train (split_seed={split_seed}) for {', '.join(carved)}" if carved else "")
        + ("" if out["test"] is not None else "; no test split (test_fraction=0)")
    )
    counts = "; ".join(f"{s}: {label_summary(t, 'click', 'purchase')}" for s, t in out.items() if t is not None)
    small = any(
        "sample" in re.sub(r"sample_skeleton_|sample_(train|test)\b", "", str(p)) or "small" in p.name
        for ps in files.values() for p in ps
    )  # fmt: skip
    notes = (
        f"Ali-CCP ({PAPER}) from {target}, format {fmt} ({fmt_note}). Tasks: "
        + ", ".join(t["name"] for t in task_dicts)
        + " (ctr: click over all impressions; cvr: purchase where click == 1; ctcvr: click AND purchase, "
        f"derived column, over all impressions). {protocol}. {counts}."
        + (f" max_rows={max_rows}: only the first rows of each file were read." if max_rows is not None else "")
        + (
            f" {orphans} row(s) have a purchase without a click (cvr ignores them; ctcvr counts them as 0)."
            if orphans
            else " No purchase without a click."
        )
        + (" These are tiny sample files: smoke tests only, not benchmark numbers." if small else "")
    )
    sources.update(published_at=PUBLISHED_AT, paper=PAPER)
    return DatasetBundle(
        train=out["train"],  # type: ignore[arg-type]
        validation=out["validation"],  # type: ignore[arg-type]
        test=out["test"],
        features=features,
        tasks=task_dicts,
        notes=notes,
        sources=sources,
    )
