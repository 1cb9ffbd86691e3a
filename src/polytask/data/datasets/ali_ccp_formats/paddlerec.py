"""Ali-CCP as PaddleRec's ESMM lines.

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
  feature values (the float after ``\x03`` in Alibaba's raw files) are not in this format.
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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polytask.data.datasets.ali_ccp_formats.shared import (
    parse_feature_ids,
    first_bad,
    read_heads,
    impressions_table,
    is_data_file,
    line_chunks,
    merge_longest,
    split_fields,
)
from polytask.errors import DataError

PADDLE_WORDS = {"train": ("train",), "validation": ("validation", "valid", "val"), "test": ("test",)}


def looks_paddlerec(line: str) -> bool:
    parts = line.strip().split(",", 4)
    return len(parts) >= 4 and all(p.strip().lstrip("-").isdigit() for p in parts[:3]) and ":" in parts[3]


def paddlerec_files(folder: Path) -> dict[str, list[Path]]:
    """Per split: files in ``folder`` named ``<word>*`` and every file in a sub-folder ``<word>``
    or ``<word>_data`` (PaddleRec reads all files of its train/test folders)."""
    found: dict[str, list[Path]] = {}
    for split, words in PADDLE_WORDS.items():
        files: list[Path] = []
        for p in sorted(folder.iterdir()):
            name = p.name.lower()
            if is_data_file(p) and name.startswith(words):
                files.append(p)
            elif p.is_dir() and name in {w for word in words for w in (word, f"{word}_data")}:
                files.extend(q for q in sorted(p.iterdir()) if q.is_file() and not q.name.startswith("."))
        found[split] = files
    return found


def read_paddlerec(path: Path, max_rows: int | None) -> tuple[pa.Table, dict[str, object]]:
    """Parse one PaddleRec ESMM file with Arrow kernels (no Python loop over lines or pairs), in
    chunks of :data:`LINES_PER_CHUNK` lines so the ~880 pairs per line never all exist as strings."""
    tables, unknown, longest = [], set(), {}
    for lines, line_no in line_chunks(path, max_rows):
        table, chunk_unknown, chunk_longest = parse_lines(lines, line_no, path)
        tables.append(table)
        unknown.update(chunk_unknown)
        merge_longest(longest, chunk_longest)
    if not tables:
        raise DataError(f"{path}: file has no lines")
    return pa.concat_tables(tables), {"unknown": sorted(unknown), "longest": longest}


def parse_lines(lines: pa.Array, line_no: np.ndarray, path: Path) -> tuple[pa.Table, list[str], dict[str, int]]:
    flat, starts = split_fields(lines, line_no, path, layout="sample_id,click,conversion,field:id,...", at_least=3)
    heads = read_heads(flat, starts, line_no, path)
    parts_per_line = np.diff(np.append(starts, len(flat)))
    parent = np.repeat(np.arange(len(lines), dtype=np.int64), parts_per_line)
    position = np.arange(len(flat), dtype=np.int64) - starts[parent]
    is_pair = position >= 3
    pairs = flat.filter(pa.array(is_pair))
    rows = parent[is_pair]
    kv = pc.split_pattern(pairs, ":")
    ok = pc.list_value_length(kv).to_numpy(zero_copy_only=False) == 2
    if not ok.all():
        i = first_bad(~ok)
        raise DataError(f"{path}: line {line_no[rows[i]]}: {pairs[i].as_py()!r} is not a field:feature_id pair")
    kv_flat = pc.list_flatten(kv)
    fields = pc.utf8_trim_whitespace(kv_flat.take(pa.array(np.arange(0, len(kv_flat), 2))))
    id_text = pc.utf8_trim_whitespace(kv_flat.take(pa.array(np.arange(1, len(kv_flat), 2))))
    ids, codes, unknown = parse_feature_ids(fields, id_text, rows, line_no, path)
    table, longest = impressions_table(heads, rows, codes, ids, line_no, path)
    return table, unknown, longest
