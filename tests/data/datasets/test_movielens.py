"""Tests of the MovieLens-100K sequential multi-task loader.

They read the real files from the data directory (``$POLYTASK_DATA_DIR`` or ``../shared/data``)
and fail, not skip, when they cannot be found. Expected values are recomputed here from the raw
files, parsed independently of the loader.
"""

from __future__ import annotations

import bisect
import gzip
import math
from collections import defaultdict
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from polytask.data.datasets.base import DatasetBundle
from polytask.data.datasets.movielens import GENRES, OCCUPATIONS, movielens
from polytask.data.paths import DataNotFoundError, dataset_dir

SEQUENCES = ("hist_items", "hist_ratings", "hist_gaps")


@pytest.fixture(scope="module")
def raw() -> dict:
    """u.data, u.user and u.item parsed with plain Python."""
    folder = dataset_dir("movielens_100k")
    ratings = []
    with gzip.open(folder / "u.data.gz", "rt") as fh:
        for line in fh:
            u, i, r, t = map(int, line.split("\t"))
            ratings.append((u, i, r, t))
    users = {}
    for line in (folder / "u.user").read_text().splitlines():
        uid, age, gender, occ, _ = line.split("|")
        users[int(uid)] = (int(age), gender, occ)
    items = {}
    for line in (folder / "u.item").read_bytes().decode("latin1").splitlines():
        f = line.split("|")
        items[int(f[0])] = [int(x) for x in f[5:]]
    by_pair = {(u, i): (r, t) for u, i, r, t in ratings}
    by_user = defaultdict(list)
    for u, i, r, t in ratings:
        by_user[u].append((t, i, r))
    for events in by_user.values():
        events.sort()
    return {"ratings": ratings, "users": users, "items": items, "pair": by_pair, "by_user": by_user}


@pytest.fixture(scope="module")
def full() -> DatasetBundle:
    return movielens()


def _rows(table: pa.Table, columns=None) -> list[dict]:
    return table.select(columns).to_pylist() if columns else table.to_pylist()


def _all(b: DatasetBundle) -> list[pa.Table]:
    return [b.train, b.validation, b.test]


def test_counts(full, raw):
    assert len(raw["ratings"]) == 100_000 and len(raw["users"]) == 943 and len(raw["items"]) == 1682
    tables = _all(full)
    assert sum(t.num_rows for t in tables) == 100_000
    users = set().union(*(set(t.column("user_id").to_pylist()) for t in tables))
    items = set().union(*(set(t.column("item_id").to_pylist()) for t in tables))
    assert len(users) == 943 and len(items) == 1682
    pairs = {(u, i) for t in tables for u, i in zip(t.column("user_id").to_pylist(), t.column("item_id").to_pylist())}
    assert pairs == set(raw["pair"])  # every rating is exactly one sample


def test_leave_last_out_split(full, raw):
    assert (full.train.num_rows, full.validation.num_rows, full.test.num_rows) == (98_114, 943, 943)
    for table, back in ((full.test, 1), (full.validation, 2)):
        users = table.column("user_id").to_pylist()
        assert sorted(users) == sorted(raw["users"])  # one row per user
        for u, i, t in zip(users, table.column("item_id").to_pylist(), table.column("timestamp").to_pylist()):
            assert raw["by_user"][u][-back][:2] == (t, i)  # last / second-last by (time, item id)
    # every training event is earlier (time, item) than the user's validation event
    val = {u: (t, i) for u, i, t in zip(*(full.validation.column(c).to_pylist() for c in ("user_id", "item_id", "timestamp")))}
    for u, i, t in zip(*(full.train.column(c).to_pylist() for c in ("user_id", "item_id", "timestamp"))):
        assert (t, i) < val[u]


def _check_history(row: dict, raw: dict, max_len: int) -> None:
    u, t = row["user_id"], row["timestamp"]
    items, ratings, gaps = (row[s] for s in SEQUENCES)
    assert len(items) == len(ratings) == len(gaps) <= max_len
    for i, r, g in zip(items, ratings, gaps):
        r_raw, t_raw = raw["pair"][(u, i)]
        assert t_raw < t, "a history event must be strictly earlier than the sample"
        assert r == r_raw
        assert g == math.floor(math.log2(1 + (t - t_raw) / 60))
    earlier = [(ts, i) for ts, i, _ in raw["by_user"][u] if ts < t]
    assert items == ([i for _, i in earlier[-max_len:]] if earlier else [])


def test_no_future_leakage_test_and_validation(full, raw):
    """Every test and validation sample: its history is exactly the user's last <= 50 events
    strictly earlier in time, in time order, with their ratings and gap buckets."""
    for table in (full.test, full.validation):
        for row in _rows(table, ["user_id", "item_id", "timestamp", *SEQUENCES]):
            _check_history(row, raw, 50)
            assert row["item_id"] not in row["hist_items"]


def test_no_future_leakage_every_sample(full, raw):
    """All 100,000 samples, vectorised: every history entry is a rating of the same user made
    strictly before the sample's time, with that rating."""
    ts = np.full((944, 1683), -1, dtype=np.int64)
    rating = np.zeros((944, 1683), dtype=np.int64)
    for u, i, r, t in raw["ratings"]:
        ts[u, i], rating[u, i] = t, r
    checked = 0
    for table in _all(full):
        hist = table.column("hist_items").combine_chunks()
        owner = np.repeat(np.arange(table.num_rows), np.diff(hist.offsets.to_numpy()))
        users = table.column("user_id").to_numpy()[owner]
        items = hist.values.to_numpy()
        when = ts[users, items]
        assert (when >= 0).all(), "every history entry is a rating of that user"
        assert (when < table.column("timestamp").to_numpy()[owner]).all()
        assert np.array_equal(rating[users, items], table.column("hist_ratings").combine_chunks().values.to_numpy())
        checked += len(items)
    # and no entry is missing: sum over samples of min(50, number of strictly earlier ratings)
    expected = 0
    for events in raw["by_user"].values():
        times = [t for t, _, _ in events]
        expected += sum(min(50, bisect.bisect_left(times, t)) for t in times)
    assert checked == expected == 3_845_217


def test_no_future_leakage_train_sample(full, raw):
    rows = _rows(full.train, ["user_id", "item_id", "timestamp", *SEQUENCES])
    picks = np.random.default_rng(0).choice(len(rows), size=5000, replace=False)
    for k in picks:
        _check_history(rows[k], raw, 50)


def test_empty_histories_are_kept_and_aligned(full, raw):
    lengths = {s: np.diff(full.train.column(s).combine_chunks().offsets.to_numpy()) for s in SEQUENCES}
    assert np.array_equal(lengths["hist_items"], lengths["hist_ratings"])
    assert np.array_equal(lengths["hist_items"], lengths["hist_gaps"])
    firsts = sum(1 for ev in raw["by_user"].values() for ts, _, _ in ev if ts == ev[0][0])
    empty = sum(int((np.diff(t.column("hist_items").combine_chunks().offsets.to_numpy()) == 0).sum()) for t in _all(full))
    assert empty == firsts == 2135  # every event in a user's first second
    assert lengths["hist_items"].max() == 50


def test_labels_and_candidate_features(full, raw):
    age_edges = [18, 25, 35, 45, 50, 56]
    for table in _all(full):
        for row in _rows(table.slice(0, 3000)):
            u, i = row["user_id"], row["item_id"]
            r, t = raw["pair"][(u, i)]
            age, gender, occ = raw["users"][u]
            assert row["timestamp"] == t
            assert row["rating"] == r and row["like"] == int(r >= 4)
            assert row["gender"] == int(gender == "F")
            assert row["age_group"] == sum(age >= e for e in age_edges)
            assert OCCUPATIONS[row["occupation"]] == occ
            assert [row[f"genre_{g}"] for g in GENRES] == raw["items"][i]
            when = datetime.fromtimestamp(t, tz=timezone.utc)
            assert (row["hour"], row["weekday"]) == (when.hour, when.weekday())
    # known answers: user 1 is 24, M, technician; user 2 is 53, F, other
    test = {r["user_id"]: r for r in _rows(full.test, ["user_id", "gender", "age_group", "occupation"])}
    assert (test[1]["gender"], test[1]["age_group"], OCCUPATIONS[test[1]["occupation"]]) == (0, 1, "technician")
    assert (test[2]["gender"], test[2]["age_group"], OCCUPATIONS[test[2]["occupation"]]) == (1, 5, "other")
    assert full.train.schema.field("rating").type == pa.float32()


def test_features_and_tasks(full):
    f = full.features
    assert [e["name"] for e in f["sequence"]] == list(SEQUENCES) and all(e["max_len"] == 50 for e in f["sequence"])
    assert f["categorical"] == ["item_id", "hour", "weekday"] and len(f["numeric"]) == 19
    inputs = {e["name"] for e in f["sequence"]} | set(f["categorical"]) | set(f["numeric"])
    assert not inputs & {"user_id", "timestamp", "like", "rating", "gender", "age_group", "occupation"}
    assert [t["name"] for t in full.tasks] == ["like", "rating", "gender", "age_group"]
    kinds = {t["name"]: (t["kind"], t.get("num_classes")) for t in full.tasks}
    assert kinds == {"like": ("binary", None), "rating": ("regression", None), "gender": ("binary", None),
                     "age_group": ("multiclass", 7)}
    occ = movielens(max_users=30, tasks=["occupation"]).tasks
    assert occ == [{"name": "occupation", "kind": "multiclass", "label": "occupation", "num_classes": 21}]


def test_max_users_and_max_len():
    b = movielens(max_users=40, max_len=7)
    assert b.test.num_rows == b.validation.num_rows == 40
    assert set(b.test.column("user_id").to_pylist()) == set(range(1, 41))
    lengths = np.diff(b.train.column("hist_items").combine_chunks().offsets.to_numpy())
    assert lengths.max() == 7
    assert "max_users=40 of 943" in b.notes


def test_held_out_users_split(full, raw):
    b = movielens(split="users", holdout=0.2, split_seed=3)
    users = {s: set(getattr(b, s).column("user_id").to_pylist()) for s in ("train", "validation", "test")}
    assert len(users["validation"]) == len(users["test"]) == round(0.2 * 943) == b.test.num_rows == b.validation.num_rows
    assert not users["train"] & users["test"] and not users["train"] & users["validation"]
    assert not users["validation"] & users["test"] and len(users["train"]) == 943 - 2 * 189
    # training users keep every event; a held-out user's sample is their leave-last-out test sample
    assert b.train.num_rows == sum(len(raw["by_user"][u]) for u in users["train"])
    last = {r["user_id"]: r for r in full.test.to_pylist()}
    for row in b.test.to_pylist():
        assert row == last[row["user_id"]]
    # no held-out user's events reach training, not even inside a sequence of another user's
    held_out = users["validation"] | users["test"]
    assert not held_out & set(b.train.column("user_id").to_pylist())
    # seeded: the same seed gives the same users, another seed others
    again = movielens(split="users", holdout=0.2, split_seed=3)
    assert again.test.equals(b.test)
    other = set(movielens(split="users", holdout=0.2, split_seed=4).test.column("user_id").to_pylist())
    assert other != users["test"]
    assert "Held-out users" in b.notes and "test user's last event" in b.sources["test"]


def test_through_the_data_path_max_len_reaches_the_encoder():
    """The feature declarations carry max_len, so the encoded sequences are [N, max_len]."""
    from polytask.config import DataConfig
    from polytask.data.preprocessor import Preprocessor
    from polytask.data.sources import load_splits

    splits = load_splits(DataConfig(dataset="movielens_100k", params={"max_users": 20, "max_len": 12}))
    pre = Preprocessor(splits.features, splits.tasks).fit(splits.train)
    table = pre.transform(splits.test)
    for s in SEQUENCES:
        assert table.features[f"seq:{s}"].shape == (20, 12)
    ids = table.features["seq:hist_items"]
    for s in SEQUENCES[1:]:  # aligned: the same steps are padding in every sequence
        assert torch_equal(ids > 0, table.features[f"seq:{s}"] > 0)
    assert sorted(t.name for t in splits.tasks) == ["age_group", "gender", "like", "rating"]


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_bad_parameters_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        movielens(tasks=["like", "zip"])
    with pytest.raises(ValueError, match="max_len"):
        movielens(max_len=0)
    with pytest.raises(ValueError, match="max_users"):
        movielens(max_users=0)
    with pytest.raises(ValueError, match="split"):
        movielens(split="random")
    with pytest.raises(ValueError, match="holdout"):
        movielens(split="users", holdout=0.5)
    with pytest.raises(ValueError, match="split_seed"):
        movielens(split="users", split_seed=-1)
    with pytest.raises(DataNotFoundError, match="movielens_100k"):
        movielens(tmp_path)
    (tmp_path / "movielens_100k").mkdir()
    with pytest.raises(DataNotFoundError, match="u.data"):
        movielens(tmp_path)
