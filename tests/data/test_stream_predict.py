"""Streamed prediction and evaluation of Parquet data larger than memory (``Run.predict_file``,
``Run.evaluate`` on a directory): the same rows, order and values as the in-memory
``Run.predict_table`` / ``Run.evaluate`` on the files concatenated (a binary, a multiclass and a
regression task, --keep columns carried), never more than one chunk of rows handed to the model
at once, the output replaced only when complete, and one clear line for each bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_frame

import polytask
from polytask.errors import DataError
from polytask.fileio import write_predictions
from polytask.run import Run

TASKS = [{"name": "click"}, {"name": "segment", "kind": "multiclass"}, {"name": "spend", "kind": "regression"}]
FEATURES = {"numeric": ["age", "score"], "categorical": ["city"]}
SIZES = (200, 150, 170)  # three files of 40-row row groups: 5, 4 and 5 row groups
READ_ROWS = 25


def frame(n: int, seed: int, first_id: int) -> pa.Table:
    table = pa.Table.from_pandas(make_frame(n, seed), preserve_index=False)
    return table.append_column("id", pa.array(np.arange(first_id, first_id + n)))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("stream_predict") / "run"
    polytask.fit(train=make_frame(300, 0), validation=make_frame(100, 1), tasks=TASKS, features=FEATURES,
                 model={"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": [4]},
                 epochs=2, progress=False, device="cpu", seed=0, eval_batch_size=16, out=out)
    return Run.load(out)


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> tuple:
    """``(directory, the files concatenated)``."""
    directory = tmp_path_factory.mktemp("parts")
    tables, first = [], 0
    for i, n in enumerate(SIZES):
        tables.append(frame(n, 10 + i, first))
        first += n
        pq.write_table(tables[-1], directory / f"part-{i}.parquet", row_group_size=40)
    return directory, pa.concat_tables(tables)


def test_streamed_predictions_equal_predict_table(run, parts, tmp_path, monkeypatch):
    directory, whole = parts
    seen: list[int] = []  # the rows of every table the model's predict_table was handed
    original = Run.predict_table
    monkeypatch.setattr(Run, "predict_table", lambda self, data, **kw: seen.append(len(data)) or original(self, data, **kw))
    written = run.predict_file(directory, tmp_path / "p.parquet", keep=["id", "city"], read_rows=READ_ROWS)
    monkeypatch.undo()
    got = pq.read_table(tmp_path / "p.parquet")
    write_predictions(run.predict_table(whole, keep=["id", "city"]), tmp_path / "whole.parquet", "parquet")
    want = pq.read_table(tmp_path / "whole.parquet")  # what `polytask predict` writes from memory
    assert got.column_names == want.column_names == ["id", "city", "click", "segment", "segment_proba", "spend"]
    assert written.rows == got.num_rows == sum(SIZES) and written.columns == got.column_names
    assert got.column("id").to_pylist() == list(range(sum(SIZES)))  # file order
    assert got.schema.equals(want.schema)
    for name in ("id", "city", "segment"):
        assert got.column(name).equals(want.column(name)), name
    # floats to 1e-6: float32 matmuls over batches cut at other rows differ in the last bit
    for name in ("click", "spend", "segment_proba"):
        a, b = (np.asarray(t.column(name).to_pylist(), dtype=np.float64) for t in (got, want))
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=name)
    # no more than one chunk was handed to the model at once: a chunk, never a row group or a file
    # (row groups of 40, 40, 40, 40, 40 | 40, 40, 40, 30 | 40, 40, 40, 40, 10 rows, 25 at a time)
    assert max(seen) == written.peak_rows == READ_ROWS and sum(seen) == sum(SIZES)
    assert len(seen) == written.chunks == 10 + 8 + 9


def test_streamed_csv_has_the_flat_columns(run, parts, tmp_path):
    directory, whole = parts
    run.predict_file(str(directory / "*.parquet"), tmp_path / "p.csv", keep=["id"], read_rows=READ_ROWS)
    import pyarrow.csv as pacsv

    got = pacsv.read_csv(tmp_path / "p.csv")
    want = run.predict_table(whole, keep=["id"], flat=True)
    assert got.column_names == want.column_names and "segment_proba_high" in got.column_names
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    assert got.column("segment").to_pylist() == want.column("segment").to_pylist()
    for name in ("click", "spend", "segment_proba_low"):
        np.testing.assert_allclose(got.column(name).to_numpy(), want.column(name).to_numpy(), rtol=1e-6, err_msg=name)


def test_streamed_evaluate_equals_in_memory(run, parts, monkeypatch):
    directory, whole = parts
    want = run.evaluate(whole)
    import polytask.data.stream_files as stream_files

    def never(*args, **kwargs):
        raise AssertionError("read whole")

    monkeypatch.setattr(stream_files.ParquetFiles, "to_table", never)
    monkeypatch.setattr("polytask.data.io.read_parquet_set", never)
    got = run.evaluate(directory)
    assert got.keys() == want.keys()
    for task in ("click", "segment", "spend"):
        assert got[task].keys() == want[task].keys()
        for metric, value in want[task].items():
            assert got[task][metric] == pytest.approx(value, rel=1e-6, abs=1e-6), (task, metric)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)


def test_a_failure_leaves_the_output_as_it_was(run, parts, tmp_path, monkeypatch):
    directory, _ = parts
    out = tmp_path / "p.parquet"
    out.write_bytes(b"before")
    calls = []
    original = Run.predict_table

    def fail_on_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise DataError("boom")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Run, "predict_table", fail_on_third)
    with pytest.raises(DataError, match="boom"):
        run.predict_file(directory, out, read_rows=READ_ROWS)
    assert out.read_bytes() == b"before" and sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]


def test_bad_input_is_one_line_naming_it(run, parts, tmp_path):
    directory, _ = parts
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: the directory holds no file"):
        run.predict_file(tmp_path / "empty", tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"nothing-\*\.parquet: the pattern matches no file"):
        run.predict_file(str(tmp_path / "nothing-*.parquet"), tmp_path / "p.parquet")
    (tmp_path / "lacking").mkdir()
    pq.write_table(frame(10, 0, 0), tmp_path / "lacking" / "a.parquet")
    pq.write_table(frame(10, 1, 10).drop(["score"]), tmp_path / "lacking" / "b.parquet")
    with pytest.raises(DataError, match=r"lacking/b\.parquet: missing column\(s\) 'score'"):
        run.predict_file(tmp_path / "lacking", tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"lacking/b\.parquet: missing column\(s\) 'score'"):
        run.evaluate(tmp_path / "lacking")
    with pytest.raises(DataError, match=r"part-0\.parquet: --keep column\(s\) 'user' not found"):
        run.predict_file(directory, tmp_path / "p.parquet", keep=["user"])
    with pytest.raises(DataError, match=r"p\.conllu: a streamed input .* writes \.parquet or \.csv predictions only"):
        run.predict_file(directory, tmp_path / "p.conllu")
    assert not (tmp_path / "p.parquet").exists() and not (tmp_path / "p.conllu").exists()
