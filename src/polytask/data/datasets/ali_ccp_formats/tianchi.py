"""Ali-CCP in Alibaba's raw Tianchi files (``sample_skeleton`` + ``common_features``).

**Alibaba's raw Tianchi files** (``format="tianchi"``; the publisher's format, Tianchi dataId 408,
about 38 GB unpacked; third-party scripts show them unpacked into ``sample_train/``, ``sample_test/``).
Per split two files, no header, comma-separated; read from a folder holding
``sample_skeleton_{train,test}.csv`` and ``common_features_{train,test}.csv`` (``.gz`` too; or in
sub-folders ``sample_train/``, ``sample_test/``), or from one ``sample_skeleton_<x>.csv`` with its
``common_features_<x>.csv`` beside it::

    sample_skeleton_<split>.csv:  sample_id,click,conversion,common_feature_index,feature_num,feature_list
    common_features_<split>.csv:  common_feature_index,feature_num,feature_list

* a ``feature_list`` holds features separated by ````, each ``field_idfeature_idvalue``
  (``field_id`` as in the PaddleRec format: ``101``, ``109_14``, ...; ``feature_id`` a non-negative
  integer; ``value`` a number); empty items (a doubled or trailing ````) are skipped;
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
  the file names, the 6 and 3 comma-separated fields in that order, the ````/````/````
  layout, the join on ``common_feature_index`` per split (train lines with the train common file).
  Secondary sources show ``common_feature_index`` as an md5-like hex string (read here as a string)
  and ``sample_id`` as 1, 2, ... Assumed, not verified (the Tianchi page itself could not be read):
  that ``sample_id`` is always an integer (required here, as for PaddleRec), ``feature_id`` a
  non-negative integer, each index on one common line only, and that the user fields (101-129,
  ``*_14``) are those in the common blocks (the join does not depend on it). No raw file exists on
  this machine: the tests write raw files built from the PaddleRec sample lines and check that both
  loaders give the same table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polytask.data.paths import DataNotFoundError
from polytask.data.datasets.ali_ccp_formats.shared import (
    PUBLISHED_AT,
    check_count,
    concat_ids,
    csv_files,
    parse_feature_ids,
    nth_field,
    first_bad,
    read_heads,
    impressions_table,
    line_chunks,
    merge_longest,
    split_fields,
)
from polytask.errors import DataError

SKELETON, COMMON = "sample_skeleton_", "common_features_"
SKELETON_LAYOUT = "6 (sample_id,click,conversion,common_feature_index,feature_num,feature_list)"
COMMON_LAYOUT = "3 (common_feature_index,feature_num,feature_list)"
#: one feature of a raw feature_list: field_id \x02 feature_id \x03 value
TOKEN = r"^(?P<field>[^\x01\x02\x03]+)\x02(?P<id>[^\x01\x02\x03]*)\x03(?P<value>[^\x01\x02\x03]*)$"
NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"


def looks_tianchi(line: str) -> tuple[bool, bool]:
    """(an Alibaba raw sample_skeleton line, a raw common_features line)."""
    parts = line.strip().split(",")
    skeleton = len(parts) == 6 and all(p.strip().isdigit() for p in parts[:3]) and "\x02" in parts[5]
    return skeleton, len(parts) == 3 and "\x02" in parts[2]


def tianchi_files(folder: Path) -> dict[str, list[Path]]:
    """Per split: ``sample_skeleton_<split>*.csv[.gz]`` in ``folder`` or in its sub-folder
    ``sample_<split>`` (the unpacked layout seen in third-party scripts); the exact name wins."""
    found: dict[str, list[Path]] = {"train": [], "validation": [], "test": []}
    for split in ("train", "test"):
        places = [q for q in (folder, folder / f"sample_{split}") if q.is_dir()]
        found[split] = csv_files(places, f"{SKELETON}{split}", folder, split, "pass path=<one sample_skeleton file>")
    return found


def common_file(skeleton: Path) -> Path:
    """The ``common_features_<x>`` file beside ``sample_skeleton_<x>`` (a DataNotFoundError naming it when absent)."""
    if not skeleton.name.startswith(SKELETON):
        raise DataError(
            f"{skeleton}: Alibaba's raw Ali-CCP impressions are read from a file named {SKELETON}<split>.csv, "
            f"with its {COMMON}<split>.csv beside it"
        )
    common = skeleton.with_name(COMMON + skeleton.name[len(SKELETON):])
    if not common.is_file():
        raise DataNotFoundError(
            f"{common} not found: the raw Ali-CCP file {skeleton} needs the common_features file of the same split "
            f"beside it (published at {PUBLISHED_AT})"
        )
    return common


def raw_features(
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
    parts = pc.extract_regex(tokens, TOKEN)
    bad = pc.is_null(parts).to_numpy(zero_copy_only=False)
    if bad.any():
        i = first_bad(bad)
        raise DataError(
            f"{path}: line {line_no[rows[i]]}: feature {tokens[i].as_py()!r} is not field_id\\x02feature_id\\x03value"
        )
    fields, values = parts.field("field"), parts.field("value")
    bad = pc.invert(pc.match_substring_regex(values, NUMBER)).to_numpy(zero_copy_only=False)
    if bad.any():
        i = first_bad(bad)
        raise DataError(
            f"{path}: line {line_no[rows[i]]}: value {values[i].as_py()!r} of field {fields[i].as_py()!r} is not a number"
        )
    ids, codes, unknown = parse_feature_ids(fields, parts.field("id"), rows, line_no, path)
    known = codes >= 0
    return rows[known], codes[known], ids[known], unknown


def read_common(common: Path, needed: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Stream ``common``, parsing only the blocks whose index is in ``needed`` (and stopping once all
    are found): (their indices in block order, token offsets per block, field codes, ids, unknown fields).
    A needed index on two lines is a DataError."""
    keys: list[pa.Array] = []
    rows_, codes_, ids_ = [], [], []
    first: dict[str, int] = {}
    unknown: set[str] = set()
    for lines, line_no in line_chunks(common, None):
        index = pc.utf8_trim_whitespace(pc.extract_regex(lines, r"^(?P<index>[^,]*)").field("index"))
        keep = pc.is_in(index, value_set=needed).to_numpy(zero_copy_only=False)
        if not keep.any():
            continue
        kept_no = line_no[keep]
        flat, starts = split_fields(lines.filter(pa.array(keep)), kept_no, common, layout=COMMON_LAYOUT, exactly=3)
        key = nth_field(flat, starts, 0)
        check_count(nth_field(flat, starts, 1), kept_no, common, 1, "feature_num")
        base = len(first)
        for k, n in zip(key.to_pylist(), kept_no):
            if k in first:
                raise DataError(f"{common}: common_feature_index {k!r} appears twice, on lines {first[k]} and {n}")
            first[k] = int(n)
        rows, codes, ids, more = raw_features(nth_field(flat, starts, 2), kept_no, common)
        keys.append(key)
        rows_.append(rows + base)
        codes_.append(codes)
        ids_.append(ids)
        unknown.update(more)
        if len(first) == len(needed):
            break
    block = concat_ids(rows_)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(block, minlength=len(first)))]).astype(np.int64)
    found = pa.concat_arrays(keys) if keys else pa.array([], pa.string())
    return found, offsets, concat_ids(codes_), concat_ids(ids_), sorted(unknown)


def read_tianchi(skeleton: Path, max_rows: int | None) -> tuple[pa.Table, dict[str, object]]:
    """Stream one ``sample_skeleton`` file (its first ``max_rows`` lines), then its ``common_features``
    file for the blocks those lines name, and join: each impression's own features, then its block's."""
    common = common_file(skeleton)
    chunks = []
    unknown: set[str] = set()
    for lines, line_no in line_chunks(skeleton, max_rows):
        flat, starts = split_fields(lines, line_no, skeleton, layout=SKELETON_LAYOUT, exactly=6)
        heads = read_heads(flat, starts, line_no, skeleton)
        index = nth_field(flat, starts, 3)
        empty = pc.equal(index, "").to_numpy(zero_copy_only=False)
        if empty.any():
            raise DataError(f"{skeleton}: line {line_no[first_bad(empty)]}: field 4 (common_feature_index) is empty")
        check_count(nth_field(flat, starts, 4), line_no, skeleton, 4, "feature_num")
        rows, codes, ids, more = raw_features(nth_field(flat, starts, 5), line_no, skeleton)
        unknown.update(more)
        chunks.append((heads, index, line_no, rows, codes, ids))
    if not chunks:
        raise DataError(f"{skeleton}: file has no lines")

    needed = pc.unique(pa.chunked_array([c[1] for c in chunks]))
    found, offsets, block_codes, block_ids, more = read_common(common, needed)
    unknown.update(more)
    if len(found) < len(needed):
        for _, index, line_no, *_ in chunks:
            missing = pc.invert(pc.is_in(index, value_set=found)).to_numpy(zero_copy_only=False)
            if missing.any():
                i = first_bad(missing)
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
        table, chunk_longest = impressions_table(
            heads, np.repeat(np.arange(n), total), joined_codes, joined_ids, line_no, skeleton,
            where=f" (its own features plus its common_features block in {common})",
        )
        tables.append(table)
        merge_longest(longest, chunk_longest)
    info = {"unknown": sorted(unknown), "longest": longest, "blocks": len(found), "common": common}
    return pa.concat_tables(tables), info
