"""Reading and writing CSV, gzipped CSV and Parquet; unreadable inputs name the file."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polytask.data.io import read_table, to_arrow, write_table
from polytask.errors import DataError

TABLE = pa.table({
    "x": pa.array([1.5, -2.0, None, 4.25]),
    "n": pa.array([1, 2, 3, 4], pa.int64()),
    "s": pa.array(["a", "b,c", None, "d e"]),
    "y": pa.array([0, 1, 1, 0], pa.int64()),
})


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_round_trip(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv.gz":
        plain = tmp_path / "plain.csv"
        write_table(TABLE, plain)
        path.write_bytes(gzip.compress(plain.read_bytes()))
    else:
        write_table(TABLE, path)
    back = read_table(path)
    assert back.column_names == TABLE.column_names
    assert back.num_rows == 4
    assert back.column("x").to_pylist() == [1.5, -2.0, None, 4.25]
    assert back.column("n").to_pylist() == [1, 2, 3, 4]
    assert back.column("y").to_pylist() == [0, 1, 1, 0]
    s = back.column("s").to_pylist()
    assert s[0] == "a" and s[1] == "b,c" and s[3] == "d e"
    assert s[2] in (None, "")  # CSV writes null strings as empty fields
    if suffix == ".parquet":
        assert back.equals(TABLE)


def test_tsv(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("a\tb\n1\tx y\n2\tz\n")
    t = read_table(path)
    assert t.column("a").to_pylist() == [1, 2] and t.column("b").to_pylist() == ["x y", "z"]


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="nope.csv"):
        read_table(path)


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        read_table(path)


def test_empty_gzip_csv(tmp_path):
    path = tmp_path / "empty.csv.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match=r"empty\.csv\.gz"):
        read_table(path)


def test_header_only_csv(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("a,b,c\n")
    with pytest.raises(DataError, match=r"header\.csv"):
        read_table(path)


def test_zero_row_parquet(tmp_path):
    path = tmp_path / "zero.parquet"
    pq.write_table(TABLE.slice(0, 0), path)
    with pytest.raises(DataError, match=r"zero\.parquet"):
        read_table(path)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match=r"bad\.parquet"):
        read_table(path)


def test_directory_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path.name)):
        read_table(tmp_path)
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match=r"data\.xlsx"):
        read_table(path)
    with pytest.raises(DataError, match=r"out\.json"):
        write_table(TABLE, tmp_path / "out.json")


def test_to_arrow_accepts_tables_dicts_paths_and_dataframes(tmp_path):
    assert to_arrow(TABLE) is TABLE
    assert to_arrow({"a": [1, 2]}).column("a").to_pylist() == [1, 2]
    path = tmp_path / "t.parquet"
    write_table(TABLE, path)
    assert to_arrow(path).equals(TABLE)
    assert to_arrow(str(path)).equals(TABLE)
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1.0, None], "b": ["x", "y"]})
    t = to_arrow(df)
    assert t.column_names == ["a", "b"] and t.column("a").to_pylist() == [1.0, None]
    with pytest.raises(DataError, match="my_input"):
        to_arrow(42, name="my_input")
    with pytest.raises(DataError, match="my_input"):
        to_arrow({"a": []}, name="my_input")


def test_a_written_split_part_forgets_where_its_rows_came_from(tmp_path):
    """A part of a seeded split maps rows to its file's rows; written out, it is a file of its own
    (an error in it must name its own rows), so the mapping is not written."""
    from polytask.data.io import file_rows, read_table, write_table
    from polytask.data.sources import split_table

    src = tmp_path / "all.csv"
    write_table(pa.table({"x": list(range(20))}), src)
    part = split_table(read_table(src), [0.3], seed=0)[1]
    assert file_rows(part) is not None
    write_table(part, tmp_path / "part.parquet")
    again = read_table(tmp_path / "part.parquet")
    assert file_rows(again) is None
    assert again.column("x").to_pylist() == part.column("x").to_pylist()
