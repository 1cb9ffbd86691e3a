"""``hash_buckets``: categorical ids by a stable hash instead of a vocabulary (the hashing trick)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import polytask
from polytask.data.encoders import hash_ids
from polytask.errors import ConfigError


def test_ids_are_in_range_missing_values_are_oov_and_integers_hash_like_their_text():
    ids = hash_ids(pa.chunked_array([pa.array(["u1", "u2", None, "u1", ""]), pa.array(["u3"])]), 7)
    assert ids.dtype == np.int64 and ids.shape == (6,)
    assert ids[2] == 0 and ids[4] == 0  # null and empty: the OOV id
    assert ids[0] == ids[3] and all(1 <= i <= 7 for i in ids[[0, 1, 3, 5]])
    np.testing.assert_array_equal(hash_ids(pa.array([3, 41, None]), 1000), hash_ids(pa.array(["3", "41", None]), 1000))
    np.testing.assert_array_equal(hash_ids(pa.array([None, None], pa.string()), 5), [0, 0])


def test_ids_are_the_same_in_every_process():
    code = "import pyarrow as pa; from polytask.data.encoders import hash_ids; print(list(hash_ids(pa.array(['a', 'b', 'item-9']), 1000)))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout for seed in ("1", "2")}
    assert outs == {str(list(hash_ids(pa.array(["a", "b", "item-9"]), 1000))) + "\n"}
    # fixed forever: a saved run's embeddings are indexed by these ids
    assert list(hash_ids(pa.array(["a", "b", "item-9"]), 1000)) == [929, 669, 737]


def frame(n: int, seed: int, users: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    return pd.DataFrame({"user": [f"user{u}" for u in user], "x": rng.normal(size=n),
                         "click": ((user % 2 == 0) ^ (rng.random(n) < 0.1)).astype(np.int64)})


def test_a_hashed_feature_trains_covers_unseen_values_and_reloads(tmp_path):
    features = {"numeric": ["x"], "categorical": [{"name": "user", "hash_buckets": 64}]}
    train, test = frame(600, 0, 40), frame(200, 1, 80)  # half the test users never trained
    run = polytask.fit(train=train, validation=train, features=features, tasks=[{"name": "click"}],
                       model="shared_bottom", epochs=40, batch_size=64, progress=False, device="cpu",
                       out=tmp_path / "run", patience=None, optimizer={"name": "adam", "lr": 0.03})
    assert run.preprocessor.input_spec().cardinalities == [65]
    ids = run.preprocessor.transform(pa.Table.from_pandas(test), "test").features["categorical"][:, 0]
    assert int((ids > 0).sum()) == len(test)  # unseen users get a bucket, not the OOV id
    assert run.metrics["validation"]["click"]["auc"] > 0.85  # it learns the users' parity through the hash
    again = polytask.load_run(tmp_path / "run")
    np.testing.assert_allclose(again.predict(test)["click"], run.predict(test)["click"])


@pytest.mark.parametrize("option, message", [
    ({"numeric": [{"name": "x", "hash_buckets": 8}]}, "feature 'x': hash_buckets applies to categorical features only"),
    ({"categorical": [{"name": "user", "hash_buckets": 8, "min_count": 2}]}, "min_count needs a vocabulary"),
    ({"categorical": [{"name": "user", "hash_buckets": 0}]}, "hash_buckets"),
])
def test_bad_hash_bucket_options_are_one_config_error(option, message):
    with pytest.raises(ConfigError, match=message):
        polytask.fit(train=frame(50, 0, 5), features=option, tasks=[{"name": "click"}], model="shared_bottom",
                     epochs=1, progress=False)
