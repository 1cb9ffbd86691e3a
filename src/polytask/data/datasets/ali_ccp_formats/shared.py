"""What the Ali-CCP format readers share: the labels, the 23 Ali-CCP fields of the line-based
formats (PaddleRec lines and Alibaba's raw files give the same table), file discovery, and the
streamed parsing of comma-separated lines with Arrow kernels (no Python loop over lines or pairs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from polytask.errors import DataError

PUBLISHED_AT = "https://tianchi.aliyun.com/dataset/408"
LABELS: tuple[str, str] = ("click", "purchase")

#: The 23 Ali-CCP fields of PaddleRec's ESMM reader, in its order.
PADDLEREC_FIELDS: tuple[str, ...] = (
    "101", "109_14", "110_14", "127_14", "150_14", "121", "122", "124", "125", "126", "127", "128", "129",
    "205", "206", "207", "210", "216", "508", "509", "702", "853", "301",
)  # fmt: skip
#: Fields with several ids per line (behaviour histories, intention nodes, combinations).
PADDLEREC_SEQUENCE: tuple[str, ...] = ("109_14", "110_14", "127_14", "150_14", "210", "508", "509", "702", "853")
PADDLEREC_CATEGORICAL: tuple[str, ...] = tuple(f for f in PADDLEREC_FIELDS if f not in PADDLEREC_SEQUENCE)

SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz")
LINES_PER_CHUNK = 8_192  #: PaddleRec lines parsed at a time


# -- file discovery ------------------------------------------------------------------------------
def is_data_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(SUFFIXES)


def csv_files(places: list[Path], stem: str, folder: Path, split: str, hint: str) -> list[Path]:
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


# -- line-based formats (PaddleRec lines, Alibaba's raw files) --------------------------------------
def first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def line_chunks(path: Path, max_rows: int | None) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """The non-empty lines of a (possibly gzipped) text file, whitespace-trimmed, with their 1-based
    line numbers, in chunks of at most :data:`LINES_PER_CHUNK` lines. Streamed (one 16 MB block of
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
            for a in range(0, len(column), LINES_PER_CHUNK):
                lines = pc.utf8_trim_whitespace(column.slice(a, LINES_PER_CHUNK))
                keep = pc.not_equal(lines, "").to_numpy(zero_copy_only=False)
                if keep.any():
                    yield lines.filter(pa.array(keep)), np.arange(seen + a + 1, seen + a + 1 + len(lines))[keep]
            seen += len(column)
            if max_rows is not None and seen >= max_rows:
                return
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: cannot be read: {err}") from None


def split_fields(
    lines: pa.Array, line_no: np.ndarray, path: Path, *, layout: str, exactly: int | None = None, at_least: int = 1
) -> tuple[pa.Array, np.ndarray]:
    """The comma-separated fields of ``lines`` (flattened) and where each line's fields start; a line
    with another number of fields is a DataError naming the file and line."""
    parts = pc.split_pattern(lines, ",")
    lengths = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    bad = lengths != exactly if exactly is not None else lengths < at_least
    if bad.any():
        i = first_bad(bad)
        raise DataError(f"{path}: line {line_no[i]} has {lengths[i]} field(s); expected {layout}")
    starts = parts.offsets.to_numpy()[:-1].astype(np.int64) - int(parts.offsets[0].as_py())
    return pc.list_flatten(parts), starts


def nth_field(flat: pa.Array, starts: np.ndarray, k: int) -> pa.Array:
    """Field ``k`` (0-based) of every line, whitespace-trimmed."""
    return pc.utf8_trim_whitespace(flat.take(pa.array(starts + k)))


def read_heads(flat: pa.Array, starts: np.ndarray, line_no: np.ndarray, path: Path) -> dict[str, np.ndarray]:
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
            i = first_bad(bad)
            expected = "an integer" if k == 0 else "0 or 1"
            raise DataError(f"{path}: line {line_no[i]}: field {k + 1} ({what}) must be {expected}, got {text[i].as_py()!r}")
        heads[name] = values.to_numpy(zero_copy_only=False)
    return heads


def check_count(text: pa.Array, line_no: np.ndarray, path: Path, k: int, what: str) -> None:
    """Field ``k`` (0-based) holds a non-negative integer (the raw files' ``feature_num``)."""
    bad = pc.invert(pc.match_substring_regex(text, r"^\d+$")).to_numpy(zero_copy_only=False)
    if bad.any():
        i = first_bad(bad)
        raise DataError(
            f"{path}: line {line_no[i]}: field {k + 1} ({what}) must be a non-negative integer, got {text[i].as_py()!r}"
        )


def parse_feature_ids(
    fields: pa.Array, id_text: pa.Array, rows: np.ndarray, line_no: np.ndarray, path: Path
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Feature ids (non-negative integers, else a DataError naming the file, line and field) and the
    index of each token's field in :data:`PADDLEREC_FIELDS` (-1 for other fields, listed third)."""
    ids = pc.cast(pc.if_else(pc.match_substring_regex(id_text, r"^\d+$"), id_text, None), pa.int64())
    bad = pc.is_null(ids).to_numpy(zero_copy_only=False)
    if bad.any():
        i = first_bad(bad)
        raise DataError(
            f"{path}: line {line_no[rows[i]]}: feature id {id_text[i].as_py()!r} of field {fields[i].as_py()!r} "
            "is not a non-negative integer"
        )
    dictionary = pc.dictionary_encode(fields)
    names = dictionary.dictionary.to_pylist()
    known = np.array([PADDLEREC_FIELDS.index(f) if f in PADDLEREC_FIELDS else -1 for f in names], dtype=np.int64)
    codes = known[dictionary.indices.to_numpy(zero_copy_only=False)] if len(names) else np.zeros(0, dtype=np.int64)
    return ids.to_numpy(zero_copy_only=False), codes, sorted(set(names) - set(PADDLEREC_FIELDS))


def impressions_table(
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
                i = first_bad(counts > 1)
                raise DataError(
                    f"{path}: line {line_no[i]}: field {field!r} holds one id per impression but appears {counts[i]} times{where}"
                )
            values = np.zeros(n, dtype=np.int64)
            values[r] = v
            columns[field] = pa.array(values, mask=counts == 0)
    table = pa.table({name: pa.array(values) for name, values in heads.items()} | columns)
    return table, longest


def concat_ids(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def merge_longest(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = max(into.get(k, 0), v)
