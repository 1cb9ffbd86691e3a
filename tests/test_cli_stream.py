"""``polytask predict`` and ``polytask evaluate`` on Parquet directories, globs and ``--stream``
files, end to end through the command line: the rows, order and columns of the in-memory
commands, and one ``error:`` line (exit status 2) for what streaming cannot do."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_frame
from typer.testing import CliRunner

import polytask
from polytask.cli import app

TASKS = [{"name": "click"}, {"name": "segment", "kind": "multiclass"}, {"name": "spend", "kind": "regression"}]
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def check_ok(result) -> None:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}\n{result.exception!r}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """``(run directory, input directory, the input files concatenated)``."""
    root = tmp_path_factory.mktemp("cli_stream")
    polytask.fit(train=make_frame(300, 0), validation=make_frame(100, 1), tasks=TASKS,
                 features={"numeric": ["age", "score"], "categorical": ["city"]},
                 model={"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": [4]},
                 epochs=1, progress=False, device="cpu", seed=0, out=root / "run")
    (root / "in").mkdir()
    tables = []
    for i, n in enumerate((120, 90)):
        table = pa.Table.from_pandas(make_frame(n, 5 + i), preserve_index=False)
        tables.append(table.append_column("id", pa.array(np.arange(n) + 1000 * i)))
        pq.write_table(tables[-1], root / "in" / f"part-{i}.parquet", row_group_size=50)
    return root / "run", root / "in", pa.concat_tables(tables)


def test_predict_a_directory_to_parquet(setup, tmp_path):
    run_dir, directory, whole = setup
    result = invoke("predict", run_dir, directory, "-o", tmp_path / "p.parquet", "--keep", "id")
    check_ok(result)
    assert "wrote 210 rows x 5 columns (id, click, segment, segment_proba, spend)" in result.stdout
    got = pq.read_table(tmp_path / "p.parquet")
    assert got.column("id").to_pylist() == whole.column("id").to_pylist()
    # the in-memory command on the same rows, as one file
    pq.write_table(whole, tmp_path / "whole.parquet")
    check_ok(invoke("predict", run_dir, tmp_path / "whole.parquet", "-o", tmp_path / "w.parquet", "--keep", "id"))
    want = pq.read_table(tmp_path / "w.parquet")
    assert got.column_names == want.column_names
    assert got.column("segment").equals(want.column("segment"))
    np.testing.assert_allclose(got.column("click").to_numpy(), want.column("click").to_numpy(), rtol=1e-6)
    # --stream streams one file: the same output
    check_ok(invoke("predict", run_dir, tmp_path / "whole.parquet", "-o", tmp_path / "s.csv", "--stream", "--keep", "id"))
    import pyarrow.csv as pacsv

    assert pacsv.read_csv(tmp_path / "s.csv").column("id").to_pylist() == whole.column("id").to_pylist()


def test_evaluate_a_directory(setup, tmp_path):
    run_dir, directory, whole = setup
    result = invoke("evaluate", run_dir, "--data", directory, "--json")
    check_ok(result)
    got = json.loads(result.stdout)[str(directory)]
    pq.write_table(whole, tmp_path / "whole.parquet")
    want = json.loads(invoke("evaluate", run_dir, "--data", tmp_path / "whole.parquet", "--json").stdout)
    want = want[str(tmp_path / "whole.parquet")]
    for task in ("click", "segment", "spend"):
        for metric, value in want[task].items():
            assert got[task][metric] == pytest.approx(value, rel=1e-6, abs=1e-6), (task, metric)


def test_streamed_input_refusals(setup, tmp_path):
    run_dir, directory, _ = setup
    result = invoke("predict", run_dir, directory, "-o", tmp_path / "p.conllu")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'p.conllu'}: a streamed input (a directory, a glob or --stream) writes .parquet or "
        ".csv predictions only; predict one file, read whole, for other formats"]
    (tmp_path / "empty").mkdir()
    result = invoke("evaluate", run_dir, "--data", tmp_path / "empty")
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'empty'}: the directory holds no file (expected Parquet files)"]
    result = invoke("predict", run_dir, str(tmp_path / "none-*.parquet"), "-o", tmp_path / "p.parquet")
    assert result.exit_code == 2 and "the pattern matches no file" in result.stderr
    assert not (tmp_path / "p.parquet").exists()


def test_evaluate_a_streamed_run_streams_its_splits(setup, tmp_path, monkeypatch):
    _, directory, _ = setup
    polytask.fit(train=directory, validation=directory, tasks=TASKS, features={"numeric": ["age", "score"],
                 "categorical": ["city"]}, model={"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": [4]},
                 overrides=["data.split.test=0"], epochs=1, progress=False, device="cpu", seed=0, out=tmp_path / "run")
    from polytask.data.stream_files import ParquetFiles

    monkeypatch.setattr(ParquetFiles, "to_table", lambda self: pytest.fail("read whole"))
    result = invoke("evaluate", tmp_path / "run", "--json")
    check_ok(result)
    got = json.loads(result.stdout)["validation"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())["validation"]
    for task in ("click", "segment", "spend"):
        for metric, value in saved[task].items():
            assert got[task][metric] == pytest.approx(value, rel=1e-6, abs=1e-6), (task, metric)
