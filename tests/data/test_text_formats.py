"""CoNLL-U and CoNLL-2000 column files as one-row-per-sentence tables, and back.

Small files are written here; the round trips on the real UD English-EWT and CoNLL-2000 files
skip only when there is no data directory at all (a data directory without the dataset fails).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pytest

from polytask.data.io import read_table, write_table
from polytask.data.paths import dataset_dir, resolve_data_dir
from polytask.data.text_formats import (
    CONLLU_COLUMNS,
    read_conll_columns,
    read_conllu,
    write_conll_columns,
    write_conllu,
)
from polytask.errors import DataError

# two sentences: comments, a multiword token (3-4), an empty node after word 5 and one after the
# last word; the second has no comments and a HEAD of "_"
SAMPLE = (
    "# newdoc id = d1\n"
    "# sent_id = s1\n"
    "# text = I don't know it.\n"
    "1\tI\tI\tPRON\tPRP\tCase=Nom\t3\tnsubj\t3:nsubj\t_\n"
    "2\tdo\tdo\tAUX\tVBP\t_\t3\taux\t3:aux\t_\n"
    "3-4\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "3\tn't\tnot\tPART\tRB\t_\t0\troot\t0:root\t_\n"
    "4\tknow\tknow\tVERB\tVB\t_\t3\tobj\t3:obj\t_\n"
    "5\tit\tit\tPRON\tPRP\t_\t4\tobj\t4:obj\tSpaceAfter=No\n"
    "5.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t3:conj\tCopyOf=4\n"
    "6\t.\t.\tPUNCT\t.\t_\t3\tpunct\t3:punct\t_\n"
    "6.1\tx\tx\tX\tX\t_\t_\t_\t3:dep\t_\n"
    "\n"
    "1\tHello\thello\tINTJ\tUH\t_\t_\tdep\t_\t_\n"
    "2\tthere\tthere\tADV\tRB\t_\t1\tadvmod\t1:advmod\t_\n"
    "\n"
)


def write(tmp_path: Path, text: str, name: str = "f.conllu") -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def real_folder(name: str) -> Path:
    """A dataset folder of the data directory (a missing one fails, like the other dataset tests)."""
    return dataset_dir(name, resolve_data_dir())


# -- CoNLL-U: reading --------------------------------------------------------------------------------
def test_read_conllu_gives_one_row_per_sentence_with_word_lines_only(tmp_path: Path) -> None:
    t = read_conllu(write(tmp_path, SAMPLE))
    assert t.num_rows == 2
    assert t.column_names == ["sent_id", "text", *CONLLU_COLUMNS, "conllu_comments", "conllu_extra"]
    row = t.slice(0, 1).to_pylist()[0]
    assert row["sent_id"] == "s1" and row["text"] == "I don't know it."
    assert row["words"] == ["I", "do", "n't", "know", "it", "."]
    assert row["upos"] == ["PRON", "AUX", "PART", "VERB", "PRON", "PUNCT"]
    assert row["heads"] == [3, 3, 0, 3, 4, 3]
    assert row["feats"][0] == "Case=Nom" and row["misc"][4] == "SpaceAfter=No"
    assert row["conllu_comments"] == ["# newdoc id = d1", "# sent_id = s1", "# text = I don't know it."]
    # each extra line carries the 0-based index of the word line it precedes (6 = after the last)
    assert row["conllu_extra"] == [
        "2\t3-4\tdon't\t_\t_\t_\t_\t_\t_\t_\t_",
        "5\t5.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t3:conj\tCopyOf=4",
        "6\t6.1\tx\tx\tX\tX\t_\t_\t_\t3:dep\t_",
    ]
    assert t.schema.field("heads").type == pa.list_(pa.int32())
    second = t.slice(1, 1).to_pylist()[0]
    # no comments: the 1-based sentence number and the words joined; HEAD "_" is null
    assert second["sent_id"] == "2" and second["text"] == "Hello there"
    assert second["heads"] == [None, 1] and second["conllu_comments"] == [] and second["conllu_extra"] == []


def test_conllu_round_trip_is_byte_exact_and_gzip_is_transparent(tmp_path: Path) -> None:
    t = read_conllu(write(tmp_path, SAMPLE, "f.conllu.gz"))
    assert t.equals(read_conllu(write(tmp_path, SAMPLE)))
    write_conllu(t, tmp_path / "out.conllu")
    assert (tmp_path / "out.conllu").read_bytes() == SAMPLE.encode()
    write_conllu(t, tmp_path / "out.conllu.gz")
    assert gzip.decompress((tmp_path / "out.conllu.gz").read_bytes()) == SAMPLE.encode()


def test_last_sentence_without_trailing_blank_line_and_crlf_are_read(tmp_path: Path) -> None:
    text = SAMPLE.rstrip("\n").replace("\n", "\r\n")
    t = read_conllu(write(tmp_path, text))
    assert t.num_rows == 2 and t.column("misc").to_pylist()[0][4] == "SpaceAfter=No"
    write_conllu(t, tmp_path / "out.conllu")  # written back with LF endings
    assert (tmp_path / "out.conllu").read_bytes() == SAMPLE.encode()


def _replace_line(number: int, new: str) -> str:
    lines = SAMPLE.split("\n")
    lines[number - 1] = new
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("line", "content", "message"),
    [
        (4, "1\tI\tI\tPRON\tPRP\tCase=Nom\t3\tnsubj\t3:nsubj", "9 tab-separated field"),
        (5, "x\tdo\tdo\tAUX\tVBP\t_\t3\taux\t3:aux\t_", "ID 'x' is not an integer"),
        (5, "3\tdo\tdo\tAUX\tVBP\t_\t3\taux\t3:aux\t_", "word ID 3, expected 2"),
        (5, "2\tdo\tdo\tAUX\tVBP\t_\tthree\taux\t3:aux\t_", "HEAD 'three' is not an integer"),
        (5, "2\tdo\tdo\tAUX\tVBP\t_\t7\taux\t3:aux\t_", r"HEAD '7' is not an integer in 0\.\.6"),
        (5, "2\tdo\tdo\tAUX\tVBP\t_\t-1\taux\t3:aux\t_", "HEAD '-1'"),
        (5, "2\tdo\tdo\tAUX\tVBP\t_\t\u00b3\taux\t3:aux\t_", "HEAD '\u00b3' is not an integer"),
        (5, "02\tdo\tdo\tAUX\tVBP\t_\t3\taux\t3:aux\t_", "ID '02' is not an integer"),
        (6, "4-5\tdon't\t_\t_\t_\t_\t_\t_\t_\t_", "multiword token ID '4-5'"),
        (6, "3-9\tdon't\t_\t_\t_\t_\t_\t_\t_\t_", "multiword token ends at word 9, the sentence has 6 words"),
        (10, "4.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t3:conj\t_", "empty node ID '4.1'"),
        (5, "# a comment", "comment line inside a sentence"),
    ],
)
def test_malformed_conllu_line_names_file_and_line(tmp_path: Path, line: int, content: str, message: str) -> None:
    path = write(tmp_path, _replace_line(line, content))
    with pytest.raises(DataError, match=rf"f\.conllu: line {line}: .*{message}"):
        read_conllu(path)


def test_empty_conllu_or_no_sentence_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="f.conllu: file is empty"):
        read_conllu(write(tmp_path, ""))
    with pytest.raises(DataError, match="no sentence"):
        read_conllu(write(tmp_path, "\n\n"))
    with pytest.raises(DataError, match=r"line 3: sentence ends without a word line"):
        read_conllu(write(tmp_path, "# sent_id = a\n# text = b\n\n"))
    with pytest.raises(DataError, match="file not found"):
        read_conllu(tmp_path / "missing.conllu")


# -- CoNLL-U: writing -----------------------------------------------------------------------------------
def test_write_conllu_fills_absent_columns_and_nulls_with_underscore(tmp_path: Path) -> None:
    t = pa.table({
        "words": pa.array([["a", "b"], ["c"]], pa.list_(pa.string())),
        "upos": pa.array([["X", None], None], pa.list_(pa.string())),
        "heads": pa.array([[0, 1], [0]], pa.list_(pa.int64())),
    })
    write_conllu(t, tmp_path / "o.conllu")
    assert (tmp_path / "o.conllu").read_text() == (
        "1\ta\t_\tX\t_\t_\t0\t_\t_\t_\n2\tb\t_\t_\t_\t_\t1\t_\t_\t_\n\n"
        "1\tc\t_\t_\t_\t_\t0\t_\t_\t_\n\n"
    )
    back = read_conllu(tmp_path / "o.conllu")
    assert back.column("words").to_pylist() == [["a", "b"], ["c"]] and back.column("heads").to_pylist() == [[0, 1], [0]]


def test_write_conllu_refuses_lists_of_another_length_and_bad_extra(tmp_path: Path) -> None:
    t = pa.table({"words": [["a", "b"]], "upos": [["X"]]})
    with pytest.raises(DataError, match=r"row 0: column 'upos' has 1 item\(s\), the sentence has 2 words"):
        write_conllu(t, tmp_path / "o.conllu")
    t = pa.table({"words": [["a"]], "conllu_extra": [["5\t5.1\tx\t_\t_\t_\t_\t_\t_\t_\t_"]]})
    with pytest.raises(DataError, match="conllu_extra"):
        write_conllu(t, tmp_path / "o.conllu")
    with pytest.raises(DataError, match="must be a list column"):
        write_conllu(pa.table({"words": ["a b"]}), tmp_path / "o.conllu")


# -- CoNLL-U: the real treebank ----------------------------------------------------------------------------
def test_ewt_dev_round_trips_byte_for_byte(tmp_path: Path) -> None:
    src = real_folder("ud_english_ewt") / "en_ewt-ud-dev.conllu.gz"
    t = read_conllu(src)
    # the README's verified counts
    assert t.num_rows == 2001
    assert sum(len(w) for w in t.column("words").to_pylist()) == 25147
    assert sum(e.split("\t")[1].count("-") == 1 for x in t.column("conllu_extra").to_pylist() for e in x) == 359
    assert len({u for x in t.column("upos").to_pylist() for u in x}) == 17
    write_conllu(t, tmp_path / "dev.conllu")
    assert (tmp_path / "dev.conllu").read_bytes() == gzip.decompress(src.read_bytes())


# -- CoNLL-2000 columns ----------------------------------------------------------------------------------
CHUNKS = "He PRP B-NP\nreckons VBZ B-VP\n. . O\n\nOK UH O\n\n"


def test_read_conll_columns_default_and_given_names(tmp_path: Path) -> None:
    t = read_conll_columns(write(tmp_path, CHUNKS, "c.conll"))
    assert t.column_names == ["words", "pos", "chunk"]
    assert t.to_pylist() == [
        {"words": ["He", "reckons", "."], "pos": ["PRP", "VBZ", "."], "chunk": ["B-NP", "B-VP", "O"]},
        {"words": ["OK"], "pos": ["UH"], "chunk": ["O"]},
    ]
    assert t.schema.field("pos").type == pa.list_(pa.string())
    two = read_conll_columns(write(tmp_path, "a\tX\n b  Y \n\n\n\nc Z\n", "two.conll.gz"))  # any whitespace; gz
    assert two.column_names == ["words", "column_2"] and two.column("column_2").to_pylist() == [["X", "Y"], ["Z"]]
    named = read_conll_columns(tmp_path / "c.conll", ["w", "p", "c"])
    assert named.column_names == ["w", "p", "c"]
    with pytest.raises(DataError, match="3 column"):
        read_conll_columns(tmp_path / "c.conll", ["w", "p"])


def test_conll_columns_line_with_another_width_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"c\.conll: line 5: 2 column\(s\), the file's first token line has 3"):
        read_conll_columns(write(tmp_path, "He PRP B-NP\nreckons VBZ B-VP\n. . O\n\nOK UH\n", "c.conll"))
    with pytest.raises(DataError, match="file is empty"):
        read_conll_columns(write(tmp_path, "", "e.conll"))
    with pytest.raises(DataError, match="no sentence"):
        read_conll_columns(write(tmp_path, "\n  \n", "e.conll"))


def test_write_conll_columns_round_trip(tmp_path: Path) -> None:
    t = read_conll_columns(write(tmp_path, CHUNKS, "c.conll"))
    write_conll_columns(t, tmp_path / "o.conll", ["words", "pos", "chunk"])
    assert (tmp_path / "o.conll").read_text() == CHUNKS
    write_conll_columns(t.select(["words", "chunk"]), tmp_path / "o2.conll")  # default: every list column
    assert (tmp_path / "o2.conll").read_text() == "He B-NP\nreckons B-VP\n. O\n\nOK O\n\n"
    bad = t.set_column(2, "chunk", pa.array([["O"], ["O"]], pa.list_(pa.string())))
    with pytest.raises(DataError, match=r"row 0: the columns hold different numbers of tokens"):
        write_conll_columns(bad, tmp_path / "o3.conll")


def test_conll2000_train_round_trips_byte_for_byte(tmp_path: Path) -> None:
    src = real_folder("conll2000_chunking") / "train.txt.gz"
    t = read_conll_columns(src)
    assert t.num_rows == 8936 and sum(len(w) for w in t.column("words").to_pylist()) == 211727
    write_conll_columns(t, tmp_path / "train.conll.gz")
    assert gzip.decompress((tmp_path / "train.conll.gz").read_bytes()) == gzip.decompress(src.read_bytes())


# -- io.read_table / write_table ------------------------------------------------------------------------------
def test_read_table_reads_the_text_formats_by_suffix(tmp_path: Path) -> None:
    assert read_table(write(tmp_path, SAMPLE, "a.conllu")).num_rows == 2
    assert read_table(write(tmp_path, SAMPLE, "a.CONLLU.gz")).num_rows == 2
    assert read_table(write(tmp_path, CHUNKS, "a.conll")).column_names == ["words", "pos", "chunk"]
    assert read_table(write(tmp_path, CHUNKS, "a.conll.gz")).num_rows == 2
    # .txt stays CSV
    assert read_table(write(tmp_path, "x,y\n1,2\n", "a.txt")).column_names == ["x", "y"]
    with pytest.raises(DataError, match=r"unknown file type \(expected .*\.conllu, \.conllu\.gz, \.conll or \.conll\.gz\)"):
        read_table(write(tmp_path, "x", "a.xlsx"))
    with pytest.raises(DataError, match=r"a\.conllu: line 4: 9 tab-separated"):
        read_table(write(tmp_path, _replace_line(4, "1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_"), "a.conllu"))


def test_write_table_writes_the_text_formats_by_suffix(tmp_path: Path) -> None:
    t = read_table(write(tmp_path, SAMPLE, "a.conllu"))
    write_table(t, tmp_path / "b.conllu")
    assert (tmp_path / "b.conllu").read_bytes() == SAMPLE.encode()
    c = read_table(write(tmp_path, CHUNKS, "a.conll"))
    write_table(c, tmp_path / "b.conll")
    assert (tmp_path / "b.conll").read_text() == CHUNKS
