"""Ali-CCP (Alibaba Click and Conversion Prediction), the public data set of ESMM (Ma et al., SIGIR 2018).

Tasks (the ESMM triple, see :mod:`polytask.data.datasets._ctcvr`): ``ctr`` (label ``click``, all
impressions), ``cvr`` (label ``purchase`` where ``click == 1``: the clicked space) and ``ctcvr``
(label ``ctcvr`` = ``click AND purchase``, all impressions; derived as a new int8 column when the
file has none). ``click``, ``purchase`` and ``ctcvr`` are int8 0/1.

Two public formats are read (``format="auto"`` tells them apart from the first line):

**torch-rechub CSV** (``format="rechub"``; datawhalechina/torch-rechub, ``examples/ranking/data/
ali-ccp``): files ``ali_ccp_train*.csv``, ``ali_ccp_val*.csv``, ``ali_ccp_test*.csv`` (``.gz``
too), with a header of 33 columns: ``click, purchase``, 23 label-encoded integer field columns
(:data:`RECHUB_CATEGORICAL`, read as int64 -> categorical features) and 8 float statistics
``D109_14 ... D853`` (:data:`RECHUB_NUMERIC` -> numeric features). Other columns are dropped.
The full files of that preprocessing are named ``ali_ccp_{train,val,test}.csv``; when a folder
holds several matches for a split, the exact name is preferred.

**PaddleRec ESMM lines** (``format="paddlerec"``; PaddlePaddle/PaddleRec ``models/multitask/esmm/
data/{train,test}/small.txt``, the full data ``datasets/ali-ccp``: ``train_data/traindata_10w.csv``
and ``test_data/testdata_10w.csv``). One impression per line, comma-separated, no header::

    sample_id,click,conversion,field:feature_id,field:feature_id,...

* field 1 ``sample_id``: an integer row id (1, 2, ... per file), kept as column ``sample_id``, not
  a feature;
* field 2 ``click`` and field 3 ``conversion`` (0/1; read into ``click`` and ``purchase``; in every
  line checked a conversion only occurs with a click, so the third field is already click AND
  conversion: PaddleRec's dygraph reader calls it ``ctcvr``);
* fields 4.. are ``field_id:feature_id`` pairs: ``field_id`` is an Ali-CCP feature-field name
  (``101``, ``109_14``, ..., ``853``: the 23 of :data:`PADDLEREC_FIELDS`), ``feature_id`` a
  non-negative integer in ONE id space shared by all fields (PaddleRec's preprocessing re-indexed
  every distinct original feature; its full-data config declares 737,946 ids). The original
  feature values (the float after ``\\x03`` in Alibaba's raw files) are not in this format.
  Pairs of one field may repeat: the multi-valued fields (user behaviour histories ``109_14,
  110_14, 127_14, 150_14``; the item's intention nodes ``210``; the user x item combinations
  ``508, 509, 702, 853``) become ``sequence`` features (list<int64> columns, in file order); the
  other 14 fields hold one value per line and become int64 ``categorical`` features (null when a
  line has none: ``126`` never occurs in the samples); a multi-valued field missing from a line is
  an empty list (``508/509/702/853`` in some sample lines). A single-valued field appearing twice in a line is a DataError naming the file,
  line and field. Fields outside the 23 are ignored (PaddleRec's reader skips them too) and listed
  in the notes. In the sample files every line has 876-888 pairs (~880), of which the user's four
  history fields are ~860. All 10 sample lines carry identical user fields (101-129 and the four
  ``*_14`` histories): presumably the "common feature" block of Alibaba's raw ``common_features_*``
  files, joined into each impression line by PaddleRec's preprocessing (inferred, not documented).

  PaddleRec's own reader (``esmm_reader.py``) iterates ``features[4:]`` and so silently drops the
  first pair of every line; here every pair from the fourth field on is read. Sequence features
  keep the last ``sequence_max_len`` ids of a field (default 50; the sample's histories hold up to
  342).

Not read: Alibaba's raw ``sample_skeleton_{train,test}.csv`` / ``common_features_{train,test}.csv``
(about 38 GB; ``\x01``/``\x02``/``\x03``-separated feature lists whose user part is stored once
per ``common_feature_index``). Convert them with torch-rechub's or PaddleRec's preprocessing first.

Field meanings (as recalled from the Ali-CCP description on Tianchi, dataId 408; unverified here):
101 user id; 121/122 user profile category/stage; 124 gender; 125 age; 126/127 consumption level
1/2; 128 occupation; 129 geography; 109_14/110_14/127_14/150_14 the user's category/shop/brand/
intention-node behaviour histories; 205 item id; 206 item category; 207 shop; 210 intention node;
216 brand; 508/509/702/853 combinations of 109_14 x 206, 110_14 x 207, 127_14 x 216, 150_14 x 210;
301 a categorical expression of the position.

Splits: the train/validation/test files found are used as given. A split without a file is carved
out of the train file by a seeded random split (``validation_fraction``/``test_fraction`` of its
rows, ``split_seed``); a single file (``path`` naming a file) is split three ways. PaddleRec ships
only train and test, so its validation split always comes out of train. ``notes`` says what was done.

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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from polytask.data.datasets._ctcvr import (
    check_fraction,
    check_max_rows,
    esmm_tasks,
    first_line,
    label_summary,
    read_csv,
    read_header,
    resolve_path,
    split_indices,
    with_ctcvr,
)
from polytask.data.datasets.base import DatasetBundle
from polytask.data.paths import DataNotFoundError
from polytask.errors import DataError
from polytask.registry import DATASETS

PUBLISHED_AT = "https://tianchi.aliyun.com/dataset/408"
PAPER = "Ma et al., SIGIR 2018 (ESMM), Ali-CCP public data set"
DEFAULT_PATH = "ali_ccp_samples/torch_rechub"
LABELS: tuple[str, str] = ("click", "purchase")

#: torch-rechub's label-encoded field columns (header order).
RECHUB_CATEGORICAL: tuple[str, ...] = (
    "101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "210", "216",
    "508", "509", "702", "853", "301", "109_14", "110_14", "127_14", "150_14",
)  # fmt: skip
#: torch-rechub's float statistics columns.
RECHUB_NUMERIC: tuple[str, ...] = ("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853")
RECHUB_COLUMNS: tuple[str, ...] = (*LABELS, *RECHUB_CATEGORICAL, *RECHUB_NUMERIC)

#: The 23 Ali-CCP fields of PaddleRec's ESMM reader, in its order.
PADDLEREC_FIELDS: tuple[str, ...] = (
    "101", "109_14", "110_14", "127_14", "150_14", "121", "122", "124", "125", "126", "127", "128", "129",
    "205", "206", "207", "210", "216", "508", "509", "702", "853", "301",
)  # fmt: skip
#: Fields with several ids per line (behaviour histories, intention nodes, combinations).
PADDLEREC_SEQUENCE: tuple[str, ...] = ("109_14", "110_14", "127_14", "150_14", "210", "508", "509", "702", "853")
PADDLEREC_CATEGORICAL: tuple[str, ...] = tuple(f for f in PADDLEREC_FIELDS if f not in PADDLEREC_SEQUENCE)

_SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz")
_LINES_PER_CHUNK = 8_192  #: PaddleRec lines parsed at a time
_RECHUB_SPLITS = {"train": "train", "validation": "val", "test": "test"}
_PADDLE_WORDS = {"train": ("train",), "validation": ("validation", "valid", "val"), "test": ("test",)}


# -- format detection ----------------------------------------------------------------------------
def _looks_paddlerec(line: str) -> bool:
    parts = line.strip().split(",", 4)
    return len(parts) >= 4 and all(p.strip().lstrip("-").isdigit() for p in parts[:3]) and ":" in parts[3]


def _sniff(path: Path) -> str:
    line = first_line(path)
    if _looks_paddlerec(line):
        return "paddlerec"
    names = {n.strip().strip('"') for n in line.split(",")}
    if "click" in names or "purchase" in names:
        return "rechub"
    raise DataError(
        f"{path}: cannot tell the Ali-CCP format from the first line {line[:80]!r}: expected a torch-rechub "
        "CSV header (click,purchase,101,...) or PaddleRec lines (sample_id,click,conversion,field:id,...)"
    )


def _is_data_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(_SUFFIXES)


def _rechub_files(folder: Path) -> dict[str, Path | None]:
    found: dict[str, Path | None] = {}
    for split, word in _RECHUB_SPLITS.items():
        matches = sorted(
            p for p in folder.iterdir()
            if p.is_file() and p.name.startswith(f"ali_ccp_{word}") and p.name.lower().endswith((".csv", ".csv.gz"))
        )  # fmt: skip
        exact = [p for p in matches if p.name in (f"ali_ccp_{word}.csv", f"ali_ccp_{word}.csv.gz")]
        if len(exact) == 1:
            matches = exact
        if len(matches) > 1:
            raise DataError(
                f"{folder}: several files for the {split} split ({', '.join(p.name for p in matches)}); "
                "pass path=<one file> or keep one of them in the folder"
            )
        found[split] = matches[0] if matches else None
    return found


def _paddlerec_files(folder: Path) -> dict[str, list[Path]]:
    """Per split: files in ``folder`` named ``<word>*`` and every file in a sub-folder ``<word>``
    or ``<word>_data`` (PaddleRec reads all files of its train/test folders)."""
    found: dict[str, list[Path]] = {}
    for split, words in _PADDLE_WORDS.items():
        files: list[Path] = []
        for p in sorted(folder.iterdir()):
            name = p.name.lower()
            if _is_data_file(p) and name.startswith(words):
                files.append(p)
            elif p.is_dir() and name in {w for word in words for w in (word, f"{word}_data")}:
                files.extend(q for q in sorted(p.iterdir()) if q.is_file() and not q.name.startswith("."))
        found[split] = files
    return found


# -- torch-rechub CSV ------------------------------------------------------------------------------
_COLUMN_NO = re.compile(r"CSV column #(\d+)")


def _read_rechub(path: Path, max_rows: int | None) -> tuple[pa.Table, list[str]]:
    header = read_header(path)
    for column in RECHUB_COLUMNS:
        if column not in header:
            raise DataError(
                f"{path}: required column {column!r} is missing (torch-rechub Ali-CCP header: {list(RECHUB_COLUMNS)})"
            )
    # a ctcvr column in the file is read (and checked against click AND purchase), else derived
    columns = [*RECHUB_COLUMNS, *(["ctcvr"] if "ctcvr" in header else [])]
    types = {c: pa.int64() for c in RECHUB_CATEGORICAL} | {c: pa.float64() for c in (*RECHUB_NUMERIC, *LABELS, "ctcvr")}
    try:
        table = read_csv(
            path,
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=columns),
            max_rows=max_rows,
        )
    except DataError as err:
        m = _COLUMN_NO.search(str(err))
        if m and int(m.group(1)) < len(header):
            raise DataError(f"{path}: column {header[int(m.group(1))]!r} has a value of the wrong type: {err}") from None
        raise
    extra = [c for c in header if c not in columns]
    return table.select(columns), extra


# -- PaddleRec lines --------------------------------------------------------------------------------
def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _read_paddlerec(path: Path, max_rows: int | None) -> tuple[pa.Table, dict[str, object]]:
    """Parse one PaddleRec ESMM file with Arrow kernels (no Python loop over lines or pairs), in
    chunks of :data:`_LINES_PER_CHUNK` lines so the ~880 pairs per line never all exist as strings."""
    raw = read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["line"], block_size=16 << 20),
        parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()}),
        max_rows=max_rows,
    )
    column = raw.column("line")
    line_no = np.arange(1, len(column) + 1)  # 1-based line numbers in the file
    tables, unknown, longest = [], set(), {}
    for a in range(0, len(column), _LINES_PER_CHUNK):
        lines = pc.utf8_trim_whitespace(column.slice(a, _LINES_PER_CHUNK).combine_chunks())
        keep = pc.not_equal(lines, "").to_numpy(zero_copy_only=False)
        if not keep.any():
            continue
        table, chunk_unknown, chunk_longest = _parse_lines(lines.filter(pa.array(keep)), line_no[a : a + len(lines)][keep], path)
        tables.append(table)
        unknown.update(chunk_unknown)
        for k, v in chunk_longest.items():
            longest[k] = max(longest.get(k, 0), v)
    if not tables:
        raise DataError(f"{path}: file has no lines")
    return pa.concat_tables(tables), {"unknown": sorted(unknown), "longest": longest}


def _parse_lines(lines: pa.Array, line_no: np.ndarray, path: Path) -> tuple[pa.Table, list[str], dict[str, int]]:
    n = len(lines)
    parts = pc.split_pattern(lines, ",")
    lengths = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    if (lengths < 3).any():
        i = _first_bad(lengths < 3)
        raise DataError(f"{path}: line {line_no[i]} has {lengths[i]} field(s); expected sample_id,click,conversion,field:id,...")
    flat = pc.list_flatten(parts)
    starts = parts.offsets.to_numpy()[:-1].astype(np.int64) - int(parts.offsets[0].as_py())
    heads: dict[str, np.ndarray] = {}
    for k, (name, what) in enumerate((("sample_id", "sample_id"), ("click", "click"), ("purchase", "conversion"))):
        text = flat.take(pa.array(starts + k))
        integer = pc.match_substring_regex(text, r"^\s*-?\d+\s*$")
        values = pc.cast(pc.if_else(integer, pc.utf8_trim_whitespace(text), None), pa.int64())
        bad = pc.is_null(values).to_numpy(zero_copy_only=False)
        if k > 0:  # the labels: 0 or 1
            bad |= ~np.isin(pc.fill_null(values, 0).to_numpy(zero_copy_only=False), (0, 1))
        if bad.any():
            i = _first_bad(bad)
            expected = "an integer" if k == 0 else "0 or 1"
            raise DataError(f"{path}: line {line_no[i]}: field {k + 1} ({what}) must be {expected}, got {text[i].as_py()!r}")
        heads[name] = values.to_numpy(zero_copy_only=False)

    parent = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False).astype(np.int64)
    position = np.arange(len(flat), dtype=np.int64) - starts[parent]
    is_pair = position >= 3
    pairs = flat.filter(pa.array(is_pair))
    rows = parent[is_pair]
    kv = pc.split_pattern(pairs, ":")
    ok = pc.list_value_length(kv).to_numpy(zero_copy_only=False) == 2
    if not ok.all():
        i = _first_bad(~ok)
        raise DataError(f"{path}: line {line_no[rows[i]]}: {pairs[i].as_py()!r} is not a field:feature_id pair")
    kv_flat = pc.list_flatten(kv)
    fields = pc.utf8_trim_whitespace(kv_flat.take(pa.array(np.arange(0, len(kv_flat), 2))))
    id_text = pc.utf8_trim_whitespace(kv_flat.take(pa.array(np.arange(1, len(kv_flat), 2))))
    ids = pc.cast(pc.if_else(pc.match_substring_regex(id_text, r"^\d+$"), id_text, None), pa.int64())
    bad = pc.is_null(ids).to_numpy(zero_copy_only=False)
    if bad.any():
        i = _first_bad(bad)
        raise DataError(
            f"{path}: line {line_no[rows[i]]}: feature id {id_text[i].as_py()!r} of field {fields[i].as_py()!r} "
            "is not a non-negative integer"
        )
    ids_np = ids.to_numpy(zero_copy_only=False)

    dictionary = pc.dictionary_encode(fields)
    names = dictionary.dictionary.to_pylist()
    codes = dictionary.indices.to_numpy(zero_copy_only=False)
    columns: dict[str, pa.Array] = {}
    longest: dict[str, int] = {}
    for field in PADDLEREC_FIELDS:
        select = codes == names.index(field) if field in names else np.zeros(len(codes), dtype=bool)
        r, v = rows[select], ids_np[select]
        counts = np.bincount(r, minlength=n)
        if field in PADDLEREC_SEQUENCE:
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            columns[field] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(v, pa.int64()))
            longest[field] = int(counts.max(initial=0))
        else:
            if (counts > 1).any():
                i = _first_bad(counts > 1)
                raise DataError(
                    f"{path}: line {line_no[i]}: field {field!r} holds one id per impression but appears {counts[i]} times"
                )
            values = np.zeros(n, dtype=np.int64)
            values[r] = v
            columns[field] = pa.array(values, mask=counts == 0)
    unknown = sorted(set(names) - set(PADDLEREC_FIELDS))
    table = pa.table(
        {
            "sample_id": pa.array(heads["sample_id"]),
            "click": pa.array(heads["click"]),
            "purchase": pa.array(heads["purchase"]),
            **columns,
        }
    )
    return table, unknown, longest


# -- the loader -------------------------------------------------------------------------------------
def _check(format: str, validation_fraction: float, test_fraction: float, max_rows: int | None) -> None:
    if format not in ("auto", "rechub", "paddlerec"):
        raise ValueError(f"format must be 'auto', 'rechub' or 'paddlerec', got {format!r}")
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
        return fmt, {"train": [target], "validation": [], "test": []}
    if format in ("auto", "rechub"):
        rechub = _rechub_files(target)
        if rechub["train"] is not None:
            return "rechub", {s: [p] if p is not None else [] for s, p in rechub.items()}
        if format == "rechub":
            raise DataNotFoundError(
                f"{target} holds no ali_ccp_train*.csv: put torch-rechub's Ali-CCP CSVs there (ali_ccp_{{train,val,test}}.csv)"
            )
    paddle = _paddlerec_files(target)
    if not paddle["train"]:
        raise DataNotFoundError(
            f"{target} holds no Ali-CCP files: expected torch-rechub CSVs (ali_ccp_train*.csv, ali_ccp_val*.csv, "
            "ali_ccp_test*.csv) or PaddleRec ESMM files (train*.txt / train/ / train_data/ and test*.txt / test/ / "
            f"test_data/). Published at {PUBLISHED_AT}."
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
    format: Literal["auto", "rechub", "paddlerec"] = "auto",
    split_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    tasks: list[str] | None = None,
    max_rows: int | None = None,
    sequence_max_len: int = 50,
) -> DatasetBundle:
    """Ali-CCP (ESMM, SIGIR 2018): ctr, cvr (clicked space), ctcvr; torch-rechub CSV or PaddleRec lines.

    ``path``: a folder or one file (default ``<data dir>/ali_ccp_samples/torch_rechub``; a relative
    path is looked up in the data directory when it does not exist from the working directory).
    ``format``: ``auto`` (from the first line), ``rechub`` or ``paddlerec``. Splits: the given
    train/val/test files; a split without a file is a seeded part (``split_seed``) of train with
    ``validation_fraction``/``test_fraction`` of its rows (``test_fraction=0``: no test split
    then). ``tasks``: a subset of ``["ctr", "cvr", "ctcvr"]``. ``max_rows``: read only the first
    ``max_rows`` rows of each file (a prefix, not a random sample). ``sequence_max_len``: PaddleRec
    format only: how many ids of each multi-valued field are kept (the last ones, in file order).
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
    tables: dict[str, pa.Table | None] = {}
    for split, paths in files.items():
        if not paths:
            tables[split] = None
            continue
        parts = []
        for p in paths:
            if fmt == "rechub":
                t, more = _read_rechub(p, max_rows)
                extra.extend(c for c in more if c not in extra)
            else:
                t, info = _read_paddlerec(p, max_rows)
                unknown.update(info["unknown"])  # type: ignore[arg-type]
                for k, v in info["longest"].items():  # type: ignore[union-attr]
                    longest[k] = max(longest.get(k, 0), v)
            t, orphan = with_ctcvr(t, p, click="click", conversion="purchase")
            orphans += orphan
            parts.append(t)
        tables[split] = pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    sources = {s: ", ".join(str(p) for p in ps) for s, ps in files.items() if ps}
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
        fmt_note = (
            f"PaddleRec ESMM lines (sample_id,click,conversion,field:id,...): {len(PADDLEREC_CATEGORICAL)} single-valued "
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
    if fmt == "paddlerec":
        kept = ["sample_id", *kept]
    out = {s: (t.select(kept) if t is not None else None) for s, t in tables.items()}
    given = [s for s, ps in files.items() if ps]
    protocol = (
        f"splits from files: {', '.join(given)}"
        + (f"; seeded split of train (split_seed={split_seed}) for {', '.join(carved)}" if carved else "")
        + ("" if out["test"] is not None else "; no test split (test_fraction=0)")
    )
    counts = "; ".join(f"{s}: {label_summary(t, 'click', 'purchase')}" for s, t in out.items() if t is not None)
    small = any("sample" in str(p) or "small" in p.name for ps in files.values() for p in ps)
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
