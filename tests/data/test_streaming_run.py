"""End to end: ``polytask.fit`` on a directory of Parquet files streams it (encoders fitted in a
streaming pass, batches through the shuffle buffer, validation and test streamed for evaluation)
and learns what the in-memory run on the same rows learns; carved splits are whole row groups;
what streaming cannot do is refused with one clear line."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import polytask
from polytask.errors import ConfigError, DataError

FEATURES = {"numeric": ["x0", "x1", "x2"], "categorical": ["c"]}
TASKS = [{"name": "click"}, {"name": "buy", "where": "click == 1"}]
TRAIN = dict(epochs=3, batch_size=128, patience=None, progress=False, seed=0, threads=1,
             monitor="click.auc")


def make_rows(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    c = rng.choice(["a", "b", "c", "d"], n)
    logit = 1.5 * x[:, 0] - x[:, 1] + np.where(c == "a", 1.0, 0.0)
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    buy = np.where(click == 1, (x[:, 2] + 0.3 * rng.normal(size=n) > 0).astype(np.int64), 0)
    return pa.table({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "c": c.tolist(), "click": click, "buy": buy})


def write(directory, sizes, seed, row_group=250):
    directory.mkdir()
    for i, n in enumerate(sizes):
        pq.write_table(make_rows(n, seed + i), directory / f"part-{i}.parquet", row_group_size=row_group)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    write(root / "train", [1500, 1200, 1300], seed=0)
    write(root / "valid", [800], seed=10)
    write(root / "test", [700, 300], seed=20)
    return root


def test_a_directory_streams_and_matches_the_in_memory_run(files, tmp_path):
    common = dict(features=FEATURES, tasks=TASKS, optimizer={"name": "adam", "lr": 0.01},
                  model={"name": "mmoe", "num_experts": 2, "expert_hidden": [16]}, **TRAIN)
    streamed = polytask.fit(train=files / "train", validation=files / "valid", test=files / "test",
                            out=tmp_path / "streamed", **common)
    memory = polytask.fit({"data": {"stream": False}}, train=files / "train", validation=files / "valid",
                          test=files / "test", out=tmp_path / "memory", **common)
    rows = json.loads((tmp_path / "streamed" / "data.json").read_text())["rows"]
    assert rows == {"train": 4000, "validation": 800, "test": 1000}
    assert "streamed" in json.loads((tmp_path / "streamed" / "data.json").read_text())["notes"]
    # the same encoders (a streamed fit equals the in-memory one) ...
    enc_s, enc_m = (json.loads((tmp_path / r / "encoders.json").read_text()) for r in ("streamed", "memory"))
    assert enc_s.keys() == enc_m.keys() and enc_s["tasks"] == enc_m["tasks"]
    for f_s, f_m in zip(enc_s["features"], enc_m["features"]):
        assert f_s["spec"] == f_m["spec"]
        assert f_s["state"].keys() == f_m["state"].keys()
        for key, value in f_m["state"].items():
            assert f_s["state"][key] == (value if isinstance(value, (list, bool)) else pytest.approx(value, rel=1e-9))
    # ... and a model as good: another batch order, the same rows
    for task in ("click", "buy"):
        s, m = streamed.metrics["test"][task]["auc"], memory.metrics["test"][task]["auc"]
        assert s > 0.7 and abs(s - m) < 0.03, (task, s, m)
    p_s = streamed.predict(files / "test" / "part-0.parquet")["click"]
    p_m = memory.predict(files / "test" / "part-0.parquet")["click"]
    assert np.corrcoef(p_s, p_m)[0, 1] > 0.95


def test_carved_validation_and_test_are_whole_row_groups(files, tmp_path):
    run = polytask.fit({"data": {"split": {"validation": 0.2, "test": 0.1, "seed": 3},
                                 "stream": {"shuffle_buffer": 600, "read_rows": 100}}},
                       train=str(files / "train" / "*.parquet"), features=FEATURES, tasks=TASKS,
                       out=tmp_path / "carved", **{**TRAIN, "epochs": 1})
    data = json.loads((tmp_path / "carved" / "data.json").read_text())
    assert sum(data["rows"].values()) == 4000
    assert all(r % 50 == 0 and r > 0 for r in data["rows"].values())  # 250, 200 and 50-row row groups
    assert data["rows"]["validation"] >= 800 and data["rows"]["test"] >= 400
    assert "validation" in run.metrics and "test" in run.metrics
    # what `polytask evaluate RUN` reads again: the same carved row groups, read whole
    from polytask.data.sources import load_splits

    again = load_splits(run.config.data)
    assert again.stream is None and again.test.num_rows == data["rows"]["test"]
    assert run.evaluate(again.test)["click"]["auc"] == pytest.approx(run.metrics["test"]["click"]["auc"], rel=1e-6)


def test_streaming_refusals(files, tmp_path):
    with pytest.raises(ConfigError, match="train.schedule: a streamed training set trains with the joint schedule only"):
        polytask.fit(train=files / "train", validation=files / "valid", features=FEATURES, tasks=TASKS,
                     schedule="round_robin", **{**TRAIN, "epochs": 1})
    (tmp_path / "one").mkdir()
    pq.write_table(make_rows(100, 0), tmp_path / "one" / "a.parquet")  # one row group
    with pytest.raises(DataError, match=r"1 row group\(s\) are too few to carve a 10% validation split"):
        polytask.fit(train=tmp_path / "one", features=FEATURES, tasks=TASKS, **{**TRAIN, "epochs": 1})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: the directory holds no file"):
        polytask.fit(train=tmp_path / "empty", features=FEATURES, tasks=TASKS, **TRAIN)


class Killed(KeyboardInterrupt):
    """A kill as seen in process: the .partial directory is kept."""


def test_an_interrupted_streamed_run_resumes_bit_identical(files, tmp_path):
    import torch

    def kill_after_first(trainer, record):
        if record["epoch"] == 1:
            raise Killed

    common = dict(validation=files / "valid", features=FEATURES, tasks=TASKS,
                  overrides=["data.stream.shuffle_buffer=500", "data.split.test=0"], **TRAIN)
    whole = polytask.fit(train=files / "train", out=tmp_path / "whole", **common)
    with pytest.raises(Killed):
        polytask.fit(train=files / "train", out=tmp_path / "stopped", callbacks=[kill_after_first], **common)
    resumed = polytask.fit(train=files / "train", out=tmp_path / "stopped", resume=True, **common)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics == whole.metrics
