"""ParquetStream: every row exactly once per epoch (one process, and two processes' shards
together), a new order each epoch, the same order after set_epoch (resume), the shuffle buffer
bounded, len() from the metadata, equal step counts on every process; file errors name the path."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch

from polytask.data.loader import in_order
from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec
from polytask.data.stream_files import ParquetFiles, is_file_set
from polytask.data.stream_fit import fit_streaming
from polytask.data.stream_split import StreamedSplit
from polytask.data.streaming import ParquetStream, StreamSchedule, rank_slices
from polytask.errors import DataError
from polytask.tasks import Task

SIZES = (1000, 730, 1270)  # rows per file
ROW_GROUP = 100


def write_set(directory, sizes=SIZES, row_group=ROW_GROUP):
    directory.mkdir(exist_ok=True)
    start = 0
    for i, n in enumerate(sizes):
        rng = np.random.default_rng(i)
        rid = np.arange(start, start + n)
        pq.write_table(pa.table({
            "rid": rid.astype(np.float64),  # the row id, read back from the encoded batch
            "x": rng.normal(size=n),
            "c": rng.choice(["a", "b", "c"], n).tolist(),
            "y": (rid % 3 == 0).astype(np.int64),
        }), directory / f"part-{i:02d}.parquet", row_group_size=row_group)
        start += n
    return start


def fitted(directory) -> tuple[ParquetFiles, Preprocessor]:
    files = ParquetFiles(directory)
    pre = Preprocessor([FeatureSpec("rid", "numeric", scale="none"), FeatureSpec("x", "numeric"),
                        FeatureSpec("c", "categorical")], [Task("y")])
    return files, fit_streaming(pre, files, read_rows=64)


def ids(batches) -> list[int]:
    return [int(v) for b in batches for v in b.features["numeric"][:, 0].tolist()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream") / "train"
    n = write_set(d)
    return n, *fitted(d)


def test_every_row_once_per_epoch_and_len_from_metadata(data):
    n, files, pre = data
    stream = ParquetStream(files, pre, 64, shuffle_buffer=300, read_rows=64, seed=3)
    assert len(stream) == -(-n // 64)
    batches = list(stream)
    assert len(batches) == len(stream)
    assert [len(b) for b in batches[:-1]] == [64] * (len(batches) - 1)
    seen = ids(batches)
    assert sorted(seen) == list(range(n))
    assert seen != sorted(seen)  # shuffled
    labels = torch.cat([b.labels["y"] for b in batches]).tolist()
    assert labels == [float(i % 3 == 0) for i in seen]  # labels stay with their rows


def test_orders_differ_across_epochs_and_set_epoch_resumes(data):
    n, files, pre = data
    stream = ParquetStream(files, pre, 50, shuffle_buffer=400, read_rows=64, seed=1)
    first, second, third = ids(stream), ids(stream), ids(stream)
    assert first != second != third
    fresh = ParquetStream(files, pre, 50, shuffle_buffer=400, read_rows=64, seed=1)
    fresh.set_epoch(2)
    assert ids(fresh) == third
    other_seed = ParquetStream(files, pre, 50, shuffle_buffer=400, read_rows=64, seed=2)
    assert ids(other_seed) != first


def test_shuffle_buffer_is_bounded(data):
    n, files, pre = data
    stream = ParquetStream(files, pre, 32, shuffle_buffer=250, read_rows=1000, seed=0)
    assert sorted(ids(stream)) == list(range(n))
    assert 250 <= stream.peak_rows <= 250 + ROW_GROUP  # the buffer plus one row group, never the data


def test_two_processes_share_every_row_once_with_equal_steps(data):
    n, files, pre = data
    streams = [ParquetStream(files, pre, 64, shuffle_buffer=300, read_rows=64, seed=5, rank=r, world_size=2)
               for r in range(2)]
    for epoch in range(2):
        parts = [ids(s) for s in streams]
        assert len(parts[0]) + len(parts[1]) == n
        assert sorted(parts[0] + parts[1]) == list(range(n))  # union is every row, disjoint
        assert len(streams[0]) == len(streams[1])
        # each process reads only the row groups its range touches (at most one shared)
        read = [{(u.file, u.group) for u, _, _ in s.slices(epoch)} for s in streams]
        assert len(read[0] & read[1]) <= 1
        assert len(read[0]) + len(read[1]) <= len(files.units) + 1


def test_equal_steps_when_rows_do_not_divide():
    from polytask.data.stream_files import RowGroup

    units = [RowGroup(0, 0, 7), RowGroup(0, 1, 4)]  # 11 rows, 2 processes: 5 and 6
    cuts = [rank_slices(units, r, 2) for r in range(2)]
    assert cuts == [[(units[0], 0, 5)], [(units[0], 5, 7), (units[1], 0, 4)]]


def test_last_batches_balance_one_extra_row(tmp_path):
    write_set(tmp_path / "d", sizes=(101,), row_group=30)  # 101 rows, 2 processes: 50 and 51
    files, pre = fitted(tmp_path / "d")
    streams = [ParquetStream(files, pre, 10, shuffle_buffer=40, seed=0, rank=r, world_size=2) for r in range(2)]
    sizes = [[len(b) for b in s] for s in streams]
    assert sizes == [[10] * 5, [10] * 4 + [11]]


def test_in_order_split_reads_every_row_in_file_order_with_labels(data):
    n, files, pre = data
    split = StreamedSplit(files, pre, read_rows=64)
    assert len(split) == n
    batches = list(in_order(split, 128))
    assert ids(batches) == list(range(n))
    assert not batches[0].labels  # features only: the labels are held by the split
    assert split.labels["y"].tolist() == [float(i % 3 == 0) for i in range(n)]
    schedule = StreamSchedule(split.stream(100, shuffle_buffer=200))
    assert schedule.per_process and len(schedule) == -(-n // 100)
    assert sorted(ids(b for b, _ in schedule)) == list(range(n))


def test_glob_and_single_file(tmp_path):
    write_set(tmp_path / "d")
    assert is_file_set(tmp_path / "d") and is_file_set(str(tmp_path / "d" / "part-*.parquet"))
    assert not is_file_set(tmp_path / "d" / "part-00.parquet")
    assert len(ParquetFiles(str(tmp_path / "d" / "part-0[01].parquet")).paths) == 2
    assert ParquetFiles(tmp_path / "d" / "part-01.parquet").num_rows == SIZES[1]


def test_errors_name_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: the directory holds no file"):
        ParquetFiles(tmp_path / "empty")
    with pytest.raises(DataError, match=r"nothing-\*\.parquet: the pattern matches no file"):
        ParquetFiles(str(tmp_path / "nothing-*.parquet"))
    write_set(tmp_path / "mixed")
    pacsv.write_csv(pa.table({"rid": [1.0]}), tmp_path / "mixed" / "extra.csv")
    with pytest.raises(DataError, match=r"extra\.csv is not a Parquet file"):
        ParquetFiles(tmp_path / "mixed")
    write_set(tmp_path / "broken")
    (tmp_path / "broken" / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"bad\.parquet: cannot be read as Parquet"):
        ParquetFiles(tmp_path / "broken")
    write_set(tmp_path / "short")
    pq.write_table(pa.table({"rid": [1.0], "x": [0.5], "y": [1]}), tmp_path / "short" / "part-99.parquet")
    files = ParquetFiles(tmp_path / "short")
    with pytest.raises(DataError, match=r"part-99\.parquet: missing column\(s\) 'c'"):
        fitted(tmp_path / "short")
    assert files.num_rows == sum(SIZES) + 1
