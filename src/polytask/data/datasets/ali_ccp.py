"""Ali-CCP (Alibaba Click and Conversion Prediction), the public data set of ESMM (Ma et al., SIGIR 2018).

Tasks (the ESMM triple, see :mod:`polytask.data.datasets._ctcvr`): ``ctr`` (label ``click``, all
impressions), ``cvr`` (label ``purchase`` where ``click == 1``: the clicked space) and ``ctcvr``
(label ``ctcvr`` = ``click AND purchase``, all impressions; derived as a new int8 column when the
file has none). ``click``, ``purchase`` and ``ctcvr`` are int8 0/1.

Three public formats are read (``format="auto"`` tells them apart from the file names and first line):

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

**Alibaba's raw Tianchi files** (``format="tianchi"``; the publisher's format, Tianchi dataId 408,
about 38 GB unpacked; third-party scripts show them unpacked into ``sample_train/``, ``sample_test/``).
Per split two files, no header, comma-separated; read from a folder holding
``sample_skeleton_{train,test}.csv`` and ``common_features_{train,test}.csv`` (``.gz`` too; or in
sub-folders ``sample_train/``, ``sample_test/``), or from one ``sample_skeleton_<x>.csv`` with its
``common_features_<x>.csv`` beside it::

    sample_skeleton_<split>.csv:  sample_id,click,conversion,common_feature_index,feature_num,feature_list
    common_features_<split>.csv:  common_feature_index,feature_num,feature_list

* a ``feature_list`` holds features separated by ``\x01``, each ``field_id\x02feature_id\x03value``
  (``field_id`` as in the PaddleRec format: ``101``, ``109_14``, ...; ``feature_id`` a non-negative
  integer; ``value`` a number); empty items (a doubled or trailing ``\x01``) are skipped;
* an impression's features are its own ``feature_list`` (item side and user x item combinations)
  followed by the ``common_features`` block its ``common_feature_index`` names (the user side, stored
  once per index); the join is then read exactly as a PaddleRec line: same table (``sample_id``,
  ``click``, ``purchase``, the 23 :data:`PADDLEREC_FIELDS` as categorical/sequence columns, ``ctcvr``
  derived), same rules (a single-valued field twice in the join is a DataError, fields outside the 23
  are ignored and listed in the notes). The feature ``value`` is checked to be a number and then
  dropped, as in PaddleRec's format (torch-rechub keeps the values of ``109_14, 110_14, 127_14,
  150_14, 508, 509, 702, 853`` as its ``D*`` columns; not read here). ``feature_num`` is checked to be
  a non-negative integer, not otherwise used. The feature ids are Alibaba's own (not re-indexed as in
  PaddleRec's files nor label-encoded as in torch-rechub's), so models see other ids than on those.
* memory: the skeleton file is streamed (only its first ``max_rows`` lines with ``max_rows``), the
  ``common_feature_index`` values it uses are collected, then the common file is streamed keeping only
  those blocks; it stops once all are found, and lines of other blocks are not parsed (so not
  checked). The joined table repeats each user's block (~860 history ids in the samples) on every
  impression: the full files do not fit in memory this way; use ``max_rows`` for a prefix.
* errors name the file and line (and field or token): a line without exactly 6 (skeleton) / 3
  (common) fields, a bad sample_id, label or feature_num, a malformed feature token, a bad id or
  value, an index with no block in the common file (naming the index and both files), a needed index
  on two lines of the common file, a missing ``common_features`` file. A conversion without a click
  is kept, as for the PaddleRec lines (counted in the notes; ``cvr`` ignores it, ``ctcvr`` is 0):
  torch-rechub's and other preprocessing scripts drop lines with ``click == 0 and conversion == 1``,
  and one third-party script reports "a small number" of them in the raw files.
* verified against public code that reads the raw files (torch-rechub ``examples/ranking/data/
  ali-ccp/preprocess_ali_ccp.py``; an Ali-CCP ``process.py`` by Dongbo Xi, Meituan; other readers):
  the file names, the 6 and 3 comma-separated fields in that order, the ``\x01``/``\x02``/``\x03``
  layout, the join on ``common_feature_index`` per split (train lines with the train common file).
  Secondary sources show ``common_feature_index`` as an md5-like hex string (read here as a string)
  and ``sample_id`` as 1, 2, ... Assumed, not verified (the Tianchi page itself could not be read):
  that ``sample_id`` is always an integer (required here, as for PaddleRec), ``feature_id`` a
  non-negative integer, each index on one common line only, and that the user fields (101-129,
  ``*_14``) are those in the common blocks (the join does not depend on it). No raw file exists on
  this machine: the tests write raw files built from the PaddleRec sample lines and check that both
  loaders give the same table.

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
from collections.abc import Iterator
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


def _looks_tianchi(line: str) -> tuple[bool, bool]:
    """(an Alibaba raw sample_skeleton line, a raw common_features line)."""
    parts = line.strip().split(",")
    skeleton = len(parts) == 6 and all(p.strip().isdigit() for p in parts[:3]) and "\x02" in parts[5]
    return skeleton, len(parts) == 3 and "\x02" in parts[2]


def _sniff(path: Path) -> str:
    line = first_line(path)
    skeleton, common = _looks_tianchi(line)
    if skeleton:
        return "tianchi"
    if common:
        raise DataError(
            f"{path}: this is a common_features file of Alibaba's raw Ali-CCP data: point path at its "
            f"{_SKELETON}<split>.csv file or at the folder holding both"
        )
    if _looks_paddlerec(line):
        return "paddlerec"
    names = {n.strip().strip('"') for n in line.split(",")}
    if "click" in names or "purchase" in names:
        return "rechub"
    raise DataError(
        f"{path}: cannot tell the Ali-CCP format from the first line {line[:80]!r}: expected a torch-rechub "
        "CSV header (click,purchase,101,...), PaddleRec lines (sample_id,click,conversion,field:id,...) or Alibaba's "
        "raw sample_skeleton lines (sample_id,click,conversion,common_feature_index,feature_num,feature_list)"
    )


def _is_data_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(_SUFFIXES)


def _rechub_files(folder: Path) -> dict[str, Path | None]:
    found: dict[str, Path | None] = {}
    for split, word in _RECHUB_SPLITS.items():
        matches = _csv_files([folder], f"ali_ccp_{word}", folder, split, "pass path=<one file>")
        found[split] = matches[0] if matches else None
    return found


def _csv_files(places: list[Path], stem: str, folder: Path, split: str, hint: str) -> list[Path]:
    """The ``<stem>*.csv[.gz]`` files in ``places``: the exact ``<stem>.csv[.gz]`` when there is
    one, and a DataError naming them when several remain."""
    matches = sorted(
        p for q in places for p in q.iterdir()
        if p.is_file() and p.name.startswith(stem) and p.name.lower().endswith((".csv", ".csv.gz"))
    )  # fmt: skip
    exact = [p for p in matches if p.name in (f"{stem}.csv", f"{stem}.csv.gz")]
    if len(exact) == 1:
        return exact
    if len(matches) > 1:
        raise DataError(
            f"{folder}: several files for the {split} split ({', '.join(str(p.relative_to(folder)) for p in matches)}); "
            f"{hint} or keep one of them"
        )
    return matches


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


def _tianchi_files(folder: Path) -> dict[str, list[Path]]:
    """Per split: ``sample_skeleton_<split>*.csv[.gz]`` in ``folder`` or in its sub-folder
    ``sample_<split>`` (the unpacked layout seen in third-party scripts); the exact name wins."""
    found: dict[str, list[Path]] = {"train": [], "validation": [], "test": []}
    for split in ("train", "test"):
        places = [q for q in (folder, folder / f"sample_{split}") if q.is_dir()]
        found[split] = _csv_files(places, f"{_SKELETON}{split}", folder, split, "pass path=<one sample_skeleton file>")
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


# -- line-based formats (PaddleRec lines, Alibaba's raw files): shared pieces -----------------------
def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _line_chunks(path: Path, max_rows: int | None) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """The non-empty lines of a (possibly gzipped) text file, whitespace-trimmed, with their 1-based
    line numbers, in chunks of at most :data:`_LINES_PER_CHUNK` lines. Streamed (one 16 MB block of
    the file at a time); with ``max_rows`` only the first ``max_rows`` lines (empty ones included)."""
    options = {
        "read_options": pacsv.ReadOptions(column_names=["line"], block_size=16 << 20),
        "parse_options": pacsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False, ignore_empty_lines=False),
        "convert_options": pacsv.ConvertOptions(column_types={"line": pa.string()}),
    }
    seen = 0
    try:
        for batch in pacsv.open_csv(path, **options):
            column = batch.column(0)
            if max_rows is not None:
                column = column.slice(0, max_rows - seen)
            for a in range(0, len(column), _LINES_PER_CHUNK):
                lines = pc.utf8_trim_whitespace(column.slice(a, _LINES_PER_CHUNK))
                keep = pc.not_equal(lines, "").to_numpy(zero_copy_only=False)
                if keep.any():
                    yield lines.filter(pa.array(keep)), np.arange(seen + a + 1, seen + a + 1 + len(lines))[keep]
            seen += len(column)
            if max_rows is not None and seen >= max_rows:
                return
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: cannot be read: {err}") from None


def _split_fields(
    lines: pa.Array, line_no: np.ndarray, path: Path, *, layout: str, exactly: int | None = None, at_least: int = 1
) -> tuple[pa.Array, np.ndarray]:
    """The comma-separated fields of ``lines`` (flattened) and where each line's fields start; a line
    with another number of fields is a DataError naming the file and line."""
    parts = pc.split_pattern(lines, ",")
    lengths = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    bad = lengths != exactly if exactly is not None else lengths < at_least
    if bad.any():
        i = _first_bad(bad)
        raise DataError(f"{path}: line {line_no[i]} has {lengths[i]} field(s); expected {layout}")
    starts = parts.offsets.to_numpy()[:-1].astype(np.int64) - int(parts.offsets[0].as_py())
    return pc.list_flatten(parts), starts


def _field(flat: pa.Array, starts: np.ndarray, k: int) -> pa.Array:
    """Field ``k`` (0-based) of every line, whitespace-trimmed."""
    return pc.utf8_trim_whitespace(flat.take(pa.array(starts + k)))


def _heads(flat: pa.Array, starts: np.ndarray, line_no: np.ndarray, path: Path) -> dict[str, np.ndarray]:
    """The first three fields of every line: ``sample_id`` (an integer), ``click`` and ``purchase``
    (the file's conversion; 0 or 1), as int64 arrays."""
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
    return heads


def _check_count(text: pa.Array, line_no: np.ndarray, path: Path, k: int, what: str) -> None:
    """Field ``k`` (0-based) holds a non-negative integer (the raw files' ``feature_num``)."""
    bad = pc.invert(pc.match_substring_regex(text, r"^\d+$")).to_numpy(zero_copy_only=False)
    if bad.any():
        i = _first_bad(bad)
        raise DataError(
            f"{path}: line {line_no[i]}: field {k + 1} ({what}) must be a non-negative integer, got {text[i].as_py()!r}"
        )


def _feature_ids(
    fields: pa.Array, id_text: pa.Array, rows: np.ndarray, line_no: np.ndarray, path: Path
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Feature ids (non-negative integers, else a DataError naming the file, line and field) and the
    index of each token's field in :data:`PADDLEREC_FIELDS` (-1 for other fields, listed third)."""
    ids = pc.cast(pc.if_else(pc.match_substring_regex(id_text, r"^\d+$"), id_text, None), pa.int64())
    bad = pc.is_null(ids).to_numpy(zero_copy_only=False)
    if bad.any():
        i = _first_bad(bad)
        raise DataError(
            f"{path}: line {line_no[rows[i]]}: feature id {id_text[i].as_py()!r} of field {fields[i].as_py()!r} "
            "is not a non-negative integer"
        )
    dictionary = pc.dictionary_encode(fields)
    names = dictionary.dictionary.to_pylist()
    known = np.array([PADDLEREC_FIELDS.index(f) if f in PADDLEREC_FIELDS else -1 for f in names], dtype=np.int64)
    codes = known[dictionary.indices.to_numpy(zero_copy_only=False)] if len(names) else np.zeros(0, dtype=np.int64)
    return ids.to_numpy(zero_copy_only=False), codes, sorted(set(names) - set(PADDLEREC_FIELDS))


def _impressions(
    heads: dict[str, np.ndarray], rows: np.ndarray, codes: np.ndarray, ids: np.ndarray, line_no: np.ndarray, path: Path,
    where: str = "",
) -> tuple[pa.Table, dict[str, int]]:
    """The table of one chunk of impressions (``sample_id, click, purchase`` and the 23 fields) from
    its tokens: ``rows`` (non-decreasing), field ``codes`` (index in :data:`PADDLEREC_FIELDS`) and
    ``ids``. Multi-valued fields -> list<int64> in token order; the others -> int64 (null when absent;
    twice in one line -> a DataError naming the file and line, ``where`` appended)."""
    n = len(heads["sample_id"])
    columns: dict[str, pa.Array] = {}
    longest: dict[str, int] = {}
    for k, field in enumerate(PADDLEREC_FIELDS):
        select = codes == k
        r, v = rows[select], ids[select]
        counts = np.bincount(r, minlength=n)
        if field in PADDLEREC_SEQUENCE:
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            columns[field] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(v, pa.int64()))
            longest[field] = int(counts.max(initial=0))
        else:
            if (counts > 1).any():
                i = _first_bad(counts > 1)
                raise DataError(
                    f"{path}: line {line_no[i]}: field {field!r} holds one id per impression but appears {counts[i]} times{where}"
                )
            values = np.zeros(n, dtype=np.int64)
            values[r] = v
            columns[field] = pa.array(values, mask=counts == 0)
    table = pa.table({name: pa.array(values) for name, values in heads.items()} | columns)
    return table, longest


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _merge_longest(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = max(into.get(k, 0), v)


# -- PaddleRec lines --------------------------------------------------------------------------------
def _read_paddlerec(path: Path, max_rows: int | None) -> tuple[pa.Table, dict[str, object]]:
    """Parse one PaddleRec ESMM file with Arrow kernels (no Python loop over lines or pairs), in
    chunks of :data:`_LINES_PER_CHUNK` lines so the ~880 pairs per line never all exist as strings."""
    tables, unknown, longest = [], set(), {}
    for lines, line_no in _line_chunks(path, max_rows):
        table, chunk_unknown, chunk_longest = _parse_lines(lines, line_no, path)
        tables.append(table)
        unknown.update(chunk_unknown)
        _merge_longest(longest, chunk_longest)
    if not tables:
        raise DataError(f"{path}: file has no lines")
    return pa.concat_tables(tables), {"unknown": sorted(unknown), "longest": longest}


def _parse_lines(lines: pa.Array, line_no: np.ndarray, path: Path) -> tuple[pa.Table, list[str], dict[str, int]]:
    flat, starts = _split_fields(lines, line_no, path, layout="sample_id,click,conversion,field:id,...", at_least=3)
    heads = _heads(flat, starts, line_no, path)
    parts_per_line = np.diff(np.append(starts, len(flat)))
    parent = np.repeat(np.arange(len(lines), dtype=np.int64), parts_per_line)
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
    ids, codes, unknown = _feature_ids(fields, id_text, rows, line_no, path)
    table, longest = _impressions(heads, rows, codes, ids, line_no, path)
    return table, unknown, longest


# -- Alibaba's raw files (sample_skeleton + common_features) ----------------------------------------
_SKELETON, _COMMON = "sample_skeleton_", "common_features_"
_SKELETON_LAYOUT = "6 (sample_id,click,conversion,common_feature_index,feature_num,feature_list)"
_COMMON_LAYOUT = "3 (common_feature_index,feature_num,feature_list)"
#: one feature of a raw feature_list: field_id \x02 feature_id \x03 value
_TOKEN = r"^(?P<field>[^\x01\x02\x03]+)\x02(?P<id>[^\x01\x02\x03]*)\x03(?P<value>[^\x01\x02\x03]*)$"
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"


def _common_file(skeleton: Path) -> Path:
    """The ``common_features_<x>`` file beside ``sample_skeleton_<x>`` (a DataNotFoundError naming it when absent)."""
    if not skeleton.name.startswith(_SKELETON):
        raise DataError(
            f"{skeleton}: Alibaba's raw Ali-CCP impressions are read from a file named {_SKELETON}<split>.csv, "
            f"with its {_COMMON}<split>.csv beside it"
        )
    common = skeleton.with_name(_COMMON + skeleton.name[len(_SKELETON):])
    if not common.is_file():
        raise DataNotFoundError(
            f"{common} not found: the raw Ali-CCP file {skeleton} needs the common_features file of the same split "
            f"beside it (published at {PUBLISHED_AT})"
        )
    return common


def _raw_features(
    feature_list: pa.Array, line_no: np.ndarray, path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Parse one raw feature_list per line (``field\\x02id\\x03value`` separated by ``\\x01``; empty
    items skipped): (line index per token, field code, feature id, unknown field names) for the
    tokens of the 23 fields, in file order. The values are checked to be numbers, then dropped."""
    lists = pc.split_pattern(feature_list, "\x01")
    tokens = pc.list_flatten(lists)
    rows = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    keep = pc.not_equal(tokens, "")
    tokens, rows = tokens.filter(keep), rows[keep.to_numpy(zero_copy_only=False)]
    parts = pc.extract_regex(tokens, _TOKEN)
    bad = pc.is_null(parts).to_numpy(zero_copy_only=False)
    if bad.any():
        i = _first_bad(bad)
        raise DataError(
            f"{path}: line {line_no[rows[i]]}: feature {tokens[i].as_py()!r} is not field_id\\x02feature_id\\x03value"
        )
    fields, values = parts.field("field"), parts.field("value")
    bad = pc.invert(pc.match_substring_regex(values, _NUMBER)).to_numpy(zero_copy_only=False)
    if bad.any():
        i = _first_bad(bad)
        raise DataError(
            f"{path}: line {line_no[rows[i]]}: value {values[i].as_py()!r} of field {fields[i].as_py()!r} is not a number"
        )
    ids, codes, unknown = _feature_ids(fields, parts.field("id"), rows, line_no, path)
    known = codes >= 0
    return rows[known], codes[known], ids[known], unknown


def _read_common(common: Path, needed: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Stream ``common``, parsing only the blocks whose index is in ``needed`` (and stopping once all
    are found): (their indices in block order, token offsets per block, field codes, ids, unknown fields).
    A needed index on two lines is a DataError."""
    keys: list[pa.Array] = []
    rows_, codes_, ids_ = [], [], []
    first: dict[str, int] = {}
    unknown: set[str] = set()
    for lines, line_no in _line_chunks(common, None):
        index = pc.utf8_trim_whitespace(pc.extract_regex(lines, r"^(?P<index>[^,]*)").field("index"))
        keep = pc.is_in(index, value_set=needed).to_numpy(zero_copy_only=False)
        if not keep.any():
            continue
        kept_no = line_no[keep]
        flat, starts = _split_fields(lines.filter(pa.array(keep)), kept_no, common, layout=_COMMON_LAYOUT, exactly=3)
        key = _field(flat, starts, 0)
        _check_count(_field(flat, starts, 1), kept_no, common, 1, "feature_num")
        base = len(first)
        for k, n in zip(key.to_pylist(), kept_no):
            if k in first:
                raise DataError(f"{common}: common_feature_index {k!r} appears twice, on lines {first[k]} and {n}")
            first[k] = int(n)
        rows, codes, ids, more = _raw_features(_field(flat, starts, 2), kept_no, common)
        keys.append(key)
        rows_.append(rows + base)
        codes_.append(codes)
        ids_.append(ids)
        unknown.update(more)
        if len(first) == len(needed):
            break
    block = _concat(rows_)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(block, minlength=len(first)))]).astype(np.int64)
    found = pa.concat_arrays(keys) if keys else pa.array([], pa.string())
    return found, offsets, _concat(codes_), _concat(ids_), sorted(unknown)


def _read_tianchi(skeleton: Path, max_rows: int | None) -> tuple[pa.Table, dict[str, object]]:
    """Stream one ``sample_skeleton`` file (its first ``max_rows`` lines), then its ``common_features``
    file for the blocks those lines name, and join: each impression's own features, then its block's."""
    common = _common_file(skeleton)
    chunks = []
    unknown: set[str] = set()
    for lines, line_no in _line_chunks(skeleton, max_rows):
        flat, starts = _split_fields(lines, line_no, skeleton, layout=_SKELETON_LAYOUT, exactly=6)
        heads = _heads(flat, starts, line_no, skeleton)
        index = _field(flat, starts, 3)
        empty = pc.equal(index, "").to_numpy(zero_copy_only=False)
        if empty.any():
            raise DataError(f"{skeleton}: line {line_no[_first_bad(empty)]}: field 4 (common_feature_index) is empty")
        _check_count(_field(flat, starts, 4), line_no, skeleton, 4, "feature_num")
        rows, codes, ids, more = _raw_features(_field(flat, starts, 5), line_no, skeleton)
        unknown.update(more)
        chunks.append((heads, index, line_no, rows, codes, ids))
    if not chunks:
        raise DataError(f"{skeleton}: file has no lines")

    needed = pc.unique(pa.chunked_array([c[1] for c in chunks]))
    found, offsets, block_codes, block_ids, more = _read_common(common, needed)
    unknown.update(more)
    if len(found) < len(needed):
        for _, index, line_no, *_ in chunks:
            missing = pc.invert(pc.is_in(index, value_set=found)).to_numpy(zero_copy_only=False)
            if missing.any():
                i = _first_bad(missing)
                raise DataError(
                    f"{skeleton}: line {line_no[i]}: common_feature_index {index[i].as_py()!r} has no block in {common} "
                    f"({len(needed) - len(found)} of the {len(needed)} indices used are missing there)"
                )

    tables, longest = [], {}
    for heads, index, line_no, rows, codes, ids in chunks:
        n = len(index)
        block = pc.index_in(index, value_set=found).to_numpy(zero_copy_only=False).astype(np.int64)
        own, shared = np.bincount(rows, minlength=n), offsets[block + 1] - offsets[block]
        total = own + shared
        start = np.cumsum(total) - total  # where each impression's tokens start in the joined arrays
        at_own = np.repeat(start - (np.cumsum(own) - own), own) + np.arange(len(rows))
        at_shared = np.repeat(start + own - (np.cumsum(shared) - shared), shared) + np.arange(shared.sum())
        take = np.repeat(offsets[block] - (np.cumsum(shared) - shared), shared) + np.arange(shared.sum())
        joined_codes, joined_ids = np.empty(total.sum(), np.int64), np.empty(total.sum(), np.int64)
        joined_codes[at_own], joined_ids[at_own] = codes, ids
        joined_codes[at_shared], joined_ids[at_shared] = block_codes[take], block_ids[take]
        table, chunk_longest = _impressions(
            heads, np.repeat(np.arange(n), total), joined_codes, joined_ids, line_no, skeleton,
            where=f" (its own features plus its common_features block in {common})",
        )
        tables.append(table)
        _merge_longest(longest, chunk_longest)
    info = {"unknown": sorted(unknown), "longest": longest, "blocks": len(found), "common": common}
    return pa.concat_tables(tables), info


# -- the loader -------------------------------------------------------------------------------------
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
            _common_file(target)  # fails now, not after reading the impressions, when it is missing
        return fmt, {"train": [target], "validation": [], "test": []}
    if format in ("auto", "rechub"):
        rechub = _rechub_files(target)
        if rechub["train"] is not None:
            return "rechub", {s: [p] if p is not None else [] for s, p in rechub.items()}
        if format == "rechub":
            raise DataNotFoundError(
                f"{target} holds no ali_ccp_train*.csv: put torch-rechub's Ali-CCP CSVs there (ali_ccp_{{train,val,test}}.csv)"
            )
    if format in ("auto", "tianchi"):
        raw = _tianchi_files(target)
        if raw["train"]:
            for p in (*raw["train"], *raw["test"]):
                _common_file(p)
            return "tianchi", raw
        if format == "tianchi" or raw["test"]:
            raise DataNotFoundError(
                f"{target} holds no {_SKELETON}train.csv (nor sample_train/{_SKELETON}train.csv): put Alibaba's raw "
                f"Ali-CCP files there ({_SKELETON}{{train,test}}.csv and {_COMMON}{{train,test}}.csv, {PUBLISHED_AT})"
            )
    paddle = _paddlerec_files(target)
    if not paddle["train"]:
        raise DataNotFoundError(
            f"{target} holds no Ali-CCP files: expected torch-rechub CSVs (ali_ccp_train*.csv, ali_ccp_val*.csv, "
            "ali_ccp_test*.csv), PaddleRec ESMM files (train*.txt / train/ / train_data/ and test*.txt / test/ / "
            f"test_data/) or Alibaba's raw files ({_SKELETON}{{train,test}}.csv with {_COMMON}{{train,test}}.csv). "
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
                t, more = _read_rechub(p, max_rows)
                extra.extend(c for c in more if c not in extra)
            else:
                t, info = (_read_paddlerec if fmt == "paddlerec" else _read_tianchi)(p, max_rows)
                unknown.update(info["unknown"])  # type: ignore[arg-type]
                _merge_longest(longest, info["longest"])  # type: ignore[arg-type]
                if fmt == "tianchi":
                    blocks.append(f"{p.name}: {info['blocks']} block(s) from {info['common']}")
            t, orphan = with_ctcvr(t, p, click="click", conversion="purchase")
            orphans += orphan
            parts.append(t)
        tables[split] = pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    sources = {
        s: ", ".join(f"{p} + {_common_file(p)}" if fmt == "tianchi" else str(p) for p in ps) for s, ps in files.items() if ps
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
