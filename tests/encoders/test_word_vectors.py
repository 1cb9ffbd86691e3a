"""read_word_vectors: word2vec/GloVe text files -> a word table laid out like the sequence
encoder's ids (0 padding, 1 unknown, i + 2 the i-th vocabulary word); exact then lower-case
matches; unknown rows random; errors naming the file and line."""

from __future__ import annotations

import gzip
import math

import pytest
import torch

from polytask.encoders.word_vectors import read_word_vectors
from polytask.errors import ConfigError, DataError

VOCAB = ["the", "Paris", "cat", "missing"]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_known_rows_exact_and_lowercase_matches(tmp_path):
    f = write(tmp_path / "v.txt", "5 3\nparis 1 2 3\nthe 0.5 -1 2.5\nunused 9 9 9\nParis 4 5 6\ncat 7 8 9e-1\n")
    torch.manual_seed(0)
    table, found = read_word_vectors(f, VOCAB, 3)
    assert table.shape == (6, 3) and table.dtype == torch.float32 and found == 3
    assert table[0].abs().sum() == 0
    torch.testing.assert_close(table[2], torch.tensor([0.5, -1.0, 2.5]))
    torch.testing.assert_close(table[3], torch.tensor([4.0, 5.0, 6.0]), msg="the exact match wins over 'paris'")
    torch.testing.assert_close(table[4], torch.tensor([7.0, 8.0, 0.9]))
    # rows 1 (unknown) and 5 (not in the file): normal(0, 1/sqrt(dim)) from the torch RNG, drawn first
    torch.manual_seed(0)
    expected = torch.randn(6, 3) / math.sqrt(3)
    torch.testing.assert_close(table[1], expected[1])
    torch.testing.assert_close(table[5], expected[5])


def test_lowercase_match_without_header_and_gzip(tmp_path):
    f = tmp_path / "v.txt.gz"
    with gzip.open(f, "wt", encoding="utf-8") as h:
        h.write("paris 1 2\nthe 3 4 \n\n")  # GloVe: no header; a trailing space and a blank line
    table, found = read_word_vectors(f, VOCAB, 2)
    assert found == 2
    torch.testing.assert_close(table[3], torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(table[2], torch.tensor([3.0, 4.0]))


def test_unfound_rows_have_the_documented_scale(tmp_path):
    f = write(tmp_path / "v.txt", "zzz " + " ".join(["1"] * 64) + "\n")
    table, found = read_word_vectors(f, [f"w{i}" for i in range(500)], 64)
    assert found == 0
    assert abs(float(table[1:].std()) - 1 / 8) < 0.01


@pytest.mark.parametrize(
    ("text", "dim", "error", "match"),
    [
        ("the 1 2 3\n", 2, ConfigError, r"v\.txt: line 1 holds a 3-dimensional vector but the encoder's word embeddings are 2 wide"),
        ("2 4\nthe 1 2 3 4\n", 3, ConfigError, r"v\.txt: line 1 \(header\) declares 4-dimensional vectors.*3 wide"),
        ("the 1 2\ncat 1 2 3\n", 2, DataError, r"v\.txt: line 2 holds a 3-dimensional vector but the file's vectors are 2-dimensional"),
        ("the 1 2\ncat 1 x\n", 2, DataError, r"v\.txt: line 2 holds 'x' where a number is expected"),
        ("the 1 nan\n", 2, DataError, r"v\.txt: line 1 holds a value that is not finite"),
    ],
)
def test_errors_name_the_file_and_line(tmp_path, text, dim, error, match):
    with pytest.raises(error, match=match):
        read_word_vectors(write(tmp_path / "v.txt", text), VOCAB, dim)


def test_missing_file_and_bad_encoding(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt: word vector file not found"):
        read_word_vectors(tmp_path / "nope.txt", VOCAB, 2)
    bad = tmp_path / "latin.txt"
    bad.write_bytes(b"the 1 2\ncaf\xe9 1 2\n")
    with pytest.raises(DataError, match=r"latin\.txt: line 2 is not UTF-8"):
        read_word_vectors(bad, VOCAB, 2)
