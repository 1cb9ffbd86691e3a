"""Token-per-line text formats as tables: CoNLL-U (Universal Dependencies) and CoNLL-2000 columns.

Both formats hold one sentence per block of lines; the tables hold **one row per sentence** with
one list column per token field, which is what the ``sequence`` features and token-level tasks
(``tagging``, ``dependency``) read.

CoNLL-U (:func:`read_conllu`, :func:`write_conllu`): the ten fields of every *syntactic word*
(integer ID lines) become list columns ``words, lemmas, upos, xpos, feats, heads, deprels, deps,
misc``, values verbatim (``_`` stays ``_``: an underscore is also a real form). What a model does
not read but a file must keep is kept verbatim too: the comment lines (``conllu_comments``) and
the multiword-token (``3-4``) and empty-node (``8.1``) lines (``conllu_extra``, each prefixed with
the 0-based index of the word line it precedes and a tab). So ``write_conllu(read_conllu(f))``
gives ``f`` back byte for byte (a file with LF line endings and one blank line after each
sentence, as the UD releases are), and a table whose label columns were replaced by predictions
writes a file that differs from the input only in those columns.

Files ending in ``.gz`` are read and written gzipped. A malformed line is a
:class:`~polytask.errors.DataError` naming the file and the 1-based line number.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from polytask.errors import DataError

#: the CoNLL-U fields after ID, in file order, as (table column, list type)
CONLLU_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("words", pa.string()),
    ("lemmas", pa.string()),
    ("upos", pa.string()),
    ("xpos", pa.string()),
    ("feats", pa.string()),
    ("heads", pa.int32()),
    ("deprels", pa.string()),
    ("deps", pa.string()),
    ("misc", pa.string()),
)
CONLLU_COLUMNS: tuple[str, ...] = tuple(name for name, _ in CONLLU_FIELDS)
COMMENTS, EXTRA = "conllu_comments", "conllu_extra"
#: default column names of a three-column CoNLL-2000 file
CONLL2000_NAMES: tuple[str, ...] = ("words", "pos", "chunk")


# -- reading lines -----------------------------------------------------------------------------------
def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line without its end of line)`` of a text file, gzipped or not.
    A CR before the LF is dropped (files are written back with LF endings)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="\n") as fh:
            for number, line in enumerate(fh, 1):
                if line.endswith("\n"):
                    line = line[:-1]
                if line.endswith("\r"):
                    line = line[:-1]
                yield number, line
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a line); save the file as UTF-8") from None
    except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
        raise DataError(f"{path}: cannot be read: {exc}") from None


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file")
    return path


def _open_for_writing(path: Path, compress: bool | None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress or (compress is None and path.name.lower().endswith(".gz")):
        return gzip.open(path, "wt", encoding="utf-8", newline="\n")
    return open(path, "w", encoding="utf-8", newline="\n")


# -- CoNLL-U ---------------------------------------------------------------------------------------------
def _natural(text: str) -> bool:
    """``text`` is a number 0, 1, 2, ... written as CoNLL-U writes it (ASCII digits, no leading 0),
    so it is written back the same."""
    return text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))


class _Sentence:
    """The lines of one CoNLL-U sentence while it is read."""

    def __init__(self) -> None:
        self.comments: list[str] = []
        self.extra: list[str] = []
        self.fields: list[list[str]] = []  # the 9 fields after ID of each word line
        self.heads: list[tuple[int, str]] = []  # (line number, HEAD text)
        self.ranges: list[tuple[int, int]] = []  # (line number, last word) of multiword tokens

    def empty(self) -> bool:
        return not (self.comments or self.extra or self.fields)


def read_conllu(path: str | os.PathLike) -> pa.Table:
    """A CoNLL-U file (``.conllu`` or ``.conllu.gz``) as one row per sentence.

    Columns: ``sent_id`` (``# sent_id =``, else the 1-based sentence number), ``text``
    (``# text =``, else the words joined by spaces), the list columns of :data:`CONLLU_FIELDS`
    (one item per integer-ID line; ``heads`` int32, 0 = root, null where HEAD is ``_``), and
    ``conllu_comments``/``conllu_extra`` that :func:`write_conllu` needs to write the file back.
    """
    path = _check_file(path)
    sentences: list[_Sentence] = []
    current = _Sentence()
    last_line = 0
    for number, line in read_lines(path):
        last_line = number
        if not line.strip():
            if not current.empty():
                _close(current, path, number)
                sentences.append(current)
                current = _Sentence()
            continue
        if line.startswith("#"):
            if current.fields or current.extra:
                raise DataError(f"{path}: line {number}: comment line inside a sentence (comments come before its first word line)")
            current.comments.append(line)
            continue
        _add_token_line(current, line, path, number)
    if not current.empty():
        _close(current, path, last_line + 1)
        sentences.append(current)
    if last_line == 0:
        raise DataError(f"{path}: file is empty")
    if not sentences:
        raise DataError(f"{path}: no sentence (no word lines) in {last_line} line(s)")
    return _conllu_table(sentences)


def _add_token_line(sent: _Sentence, line: str, path: Path, number: int) -> None:
    fields = line.split("\t")
    if len(fields) != 10:
        raise DataError(f"{path}: line {number}: {len(fields)} tab-separated field(s), a CoNLL-U line has 10: {line[:80]!r}")
    ident = fields[0]
    if _natural(ident):
        expected = len(sent.fields) + 1
        if int(ident) != expected:
            raise DataError(f"{path}: line {number}: word ID {ident}, expected {expected} (IDs run 1..n in order)")
        sent.fields.append(fields[1:])
        sent.heads.append((number, fields[6]))
        return
    if "-" in ident:
        a, _, b = ident.partition("-")
        ok = _natural(a) and _natural(b) and int(a) == len(sent.fields) + 1 and int(b) >= int(a)
        if not ok:
            raise DataError(f"{path}: line {number}: multiword token ID {ident!r} must be a range a-b starting at the next word ({len(sent.fields) + 1})")
        sent.ranges.append((number, int(b)))
    elif "." in ident:
        a, _, b = ident.partition(".")
        if not (_natural(a) and _natural(b) and int(a) == len(sent.fields)):
            raise DataError(f"{path}: line {number}: empty node ID {ident!r} must be <last word>.<k> ({len(sent.fields)}.<k>)")
    else:
        raise DataError(f"{path}: line {number}: ID {ident!r} is not an integer, a range a-b or an empty node a.b")
    sent.extra.append(f"{len(sent.fields)}\t{line}")


def _close(sent: _Sentence, path: Path, number: int) -> None:
    """Check a finished sentence (it has words; every HEAD is in 0..n)."""
    if not sent.fields:
        raise DataError(f"{path}: line {number}: sentence ends without a word line (integer ID)")
    n = len(sent.fields)
    for line_number, last in sent.ranges:
        if last > n:
            raise DataError(f"{path}: line {line_number}: multiword token ends at word {last}, the sentence has {n} words")
    for line_number, head in sent.heads:
        if head == "_":
            continue
        if not _natural(head) or int(head) > n:
            raise DataError(f"{path}: line {line_number}: HEAD {head!r} is not an integer in 0..{n} (the sentence has {n} words)")


def _comment_value(comments: list[str], key: str) -> str | None:
    for c in comments:
        body = c[1:].strip()
        name, eq, value = body.partition("=")
        if eq and name.strip() == key:
            return value.strip()
    return None


def _conllu_table(sentences: list[_Sentence]) -> pa.Table:
    columns: dict[str, Any] = {
        "sent_id": pa.array(
            [_comment_value(s.comments, "sent_id") or str(i + 1) for i, s in enumerate(sentences)], pa.string()
        ),
        "text": pa.array(
            [
                t if (t := _comment_value(s.comments, "text")) is not None else " ".join(f[0] for f in s.fields)
                for s in sentences
            ],
            pa.string(),
        ),
    }
    for j, (name, typ) in enumerate(CONLLU_FIELDS):
        if name == "heads":
            values = [[None if f[j] == "_" else int(f[j]) for f in s.fields] for s in sentences]
        else:
            values = [[f[j] for f in s.fields] for s in sentences]
        columns[name] = pa.array(values, pa.list_(typ))
    columns[COMMENTS] = pa.array([s.comments for s in sentences], pa.list_(pa.string()))
    columns[EXTRA] = pa.array([s.extra for s in sentences], pa.list_(pa.string()))
    return pa.table(columns)


def write_conllu(table: pa.Table, path: str | os.PathLike, *, compress: bool | None = None) -> None:
    """Write a table of sentences (the form :func:`read_conllu` gives) as CoNLL-U.

    Per row: the ``conllu_comments`` lines, then one line per word with IDs 1..n and the fields
    of :data:`CONLLU_FIELDS` (a column absent from the table, a null list or a null item writes
    ``_``), the ``conllu_extra`` lines before the word they precede, and a blank line. ``n`` is
    the length of the first of those columns present; a list of another length is a DataError
    naming the row and column. The file is gzipped when ``compress`` is true (None: when the
    path ends in ``.gz``).
    """
    path = Path(path)
    n_rows = table.num_rows
    fields: list[list[Any] | None] = []
    for name, _ in CONLLU_FIELDS:
        if name not in table.column_names:
            fields.append(None)
            continue
        col = table.column(name)
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
            raise DataError(f"{path}: column {name!r} must be a list column (one item per word) to write CoNLL-U, not {col.type}")
        fields.append(col.to_pylist())
    if all(f is None for f in fields):
        raise DataError(f"{path}: the table has none of the CoNLL-U columns {', '.join(CONLLU_COLUMNS)}")
    comments = table.column(COMMENTS).to_pylist() if COMMENTS in table.column_names else [None] * n_rows
    extra = table.column(EXTRA).to_pylist() if EXTRA in table.column_names else [None] * n_rows
    out: list[str] = []
    for r in range(n_rows):
        n = next((len(f[r]) for f in fields if f is not None and f[r] is not None), 0)
        rows = [f[r] if f is not None else None for f in fields]
        for (name, _), items in zip(CONLLU_FIELDS, rows):
            if items is not None and len(items) != n:
                raise DataError(f"{path}: row {r}: column {name!r} has {len(items)} item(s), the sentence has {n} words", row=r)
        before = _extra_by_index(extra[r] or [], n, path, r)
        out.extend(comments[r] or [])
        for i in range(n):
            out.extend(before.get(i, ()))
            cells = [str(i + 1)]
            for items in rows:
                value = None if items is None else items[i]
                cells.append("_" if value is None else str(value))
            out.append("\t".join(cells))
        out.extend(before.get(n, ()))
        out.append("")
    with _open_for_writing(path, compress) as fh:
        fh.write("\n".join(out) + "\n" if out else "")


def _extra_by_index(extra: list[str], n: int, path: Path, row: int) -> dict[int, list[str]]:
    """``conllu_extra`` items grouped by the index of the word they precede (0..n)."""
    out: dict[int, list[str]] = {}
    for item in extra:
        index, tab, line = item.partition("\t")
        if not (tab and index.isdigit() and int(index) <= n):
            raise DataError(f"{path}: row {row}: conllu_extra item {item[:60]!r} must be '<word index 0..{n}>\\t<line>'", row=row)
        out.setdefault(int(index), []).append(line)
    return out


# -- CoNLL-2000 columns -----------------------------------------------------------------------------------
def default_column_names(width: int) -> list[str]:
    """``words, pos, chunk`` for three columns, else ``words, column_2, column_3, ...``."""
    if width == len(CONLL2000_NAMES):
        return list(CONLL2000_NAMES)
    return ["words"] + [f"column_{j}" for j in range(2, width + 1)]


def read_conll_columns(path: str | os.PathLike, names: Sequence[str] | None = None) -> pa.Table:
    """A CoNLL-2000-style file (one token per line, whitespace-separated columns, a blank line
    between sentences; ``.gz`` read transparently) as one row per sentence and one list<string>
    column per file column, named ``names`` (default: :func:`default_column_names`)."""
    path = _check_file(path)
    width: int | None = None
    columns: list[list[list[str]]] = []
    current: list[list[str]] = []
    last_line = 0

    def close() -> None:
        if current:
            for j, col in enumerate(columns):
                col.append([tok[j] for tok in current])
            current.clear()

    for number, line in read_lines(path):
        last_line = number
        parts = line.split()
        if not parts:
            close()
            continue
        if width is None:
            width = len(parts)
            if names is not None and len(names) != width:
                raise DataError(f"{path}: line {number}: {width} column(s), but {len(names)} name(s) were given: {list(names)}")
            columns = [[] for _ in range(width)]
        elif len(parts) != width:
            raise DataError(f"{path}: line {number}: {len(parts)} column(s), the file's first token line has {width}: {line[:80]!r}")
        current.append(parts)
    close()
    if last_line == 0:
        raise DataError(f"{path}: file is empty")
    if width is None:
        raise DataError(f"{path}: no sentence (no token lines) in {last_line} line(s)")
    labels = list(names) if names is not None else default_column_names(width)
    if len(set(labels)) != len(labels):
        raise DataError(f"{path}: column names must be unique, got {labels}")
    return pa.table({name: pa.array(col, pa.list_(pa.string())) for name, col in zip(labels, columns)})


def write_conll_columns(
    table: pa.Table, path: str | os.PathLike, names: Sequence[str] | None = None, *, compress: bool | None = None
) -> None:
    """Write the list columns ``names`` (default: every list column, in table order) as one token
    per line, the columns separated by one space, a blank line after every sentence (the form
    :func:`read_conll_columns` reads). A null item writes ``_``; a row whose lists differ in length
    is a DataError naming the row. Gzipped as in :func:`write_conllu`."""
    path = Path(path)
    if names is None:
        names = [n for n, t in zip(table.column_names, table.schema.types) if pa.types.is_list(t) or pa.types.is_large_list(t)]
    if not names:
        raise DataError(f"{path}: no list columns to write as CoNLL columns")
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise DataError(f"{path}: column(s) {missing} not in the table")
    lists = [table.column(n).to_pylist() for n in names]
    out: list[str] = []
    for r in range(table.num_rows):
        rows = [col[r] or [] for col in lists]
        lengths = {len(x) for x in rows}
        if len(lengths) != 1:
            detail = ", ".join(f"{n}: {len(x)}" for n, x in zip(names, rows))
            raise DataError(f"{path}: row {r}: the columns hold different numbers of tokens ({detail})", row=r)
        for tokens in zip(*rows):
            cells = ["_" if v is None else str(v) for v in tokens]
            bad = [c for c in cells if not c or any(ch.isspace() for ch in c)]
            if bad:
                raise DataError(f"{path}: row {r}: value {bad[0]!r} is empty or holds whitespace (it cannot be one CoNLL column)", row=r)
            out.append(" ".join(cells))
        out.append("")
    with _open_for_writing(path, compress) as fh:
        fh.write("\n".join(out) + "\n" if out else "")
