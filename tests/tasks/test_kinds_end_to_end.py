"""``polytask.fit`` trains a shared-bottom model on a ranking, a binary and two multilabel tasks
(group column, label columns and a name-list column inferred away from the features), saves and
reloads the run, and ``Run.predict_table`` writes every kind's columns."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import polytask
from polytask import load_run

TASKS = [
    {"name": "rel", "kind": "ranking", "group": "query", "k": 5},
    {"name": "click"},
    {"name": "genres", "kind": "multilabel"},  # "drama|war" strings
    {"name": "flags", "kind": "multilabel", "labels": ["flag_a", "flag_b"]},  # two 0/1 columns
]
MODEL = {"name": "shared_bottom", "bottom_hidden": [16], "tower_hidden": [8]}
OPTIONS = {"epochs": 2, "batch_size": 64, "progress": False, "seed": 0, "device": "cpu"}


def make_table(groups: int, size: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = groups * size
    x1, x2, x3 = rng.normal(size=(3, n))
    city = rng.choice(["paris", "rome", "oslo"], n)
    relevance = np.clip(np.round(1.5 + x1 + 0.3 * rng.normal(size=n)), 0, 3)
    relevance[rng.random(n) < 0.05] = np.nan
    click = (rng.random(n) < 1 / (1 + np.exp(-2 * x2))).astype(np.int64)
    names = np.array(["comedy", "drama", "war"])
    picks = np.stack([x3 > 0.5, x1 > 0, city == "rome"], 1)
    genres = ["|".join(names[p]) for p in picks]
    flag_a = (x2 + x3 > 0).astype(float)
    flag_a[rng.random(n) < 0.1] = np.nan  # one label of the two missing: masks only that element
    flag_b = (city == "oslo").astype(float)
    query = [f"q{seed}-{i}" for i in np.repeat(np.arange(groups), size)]
    return pa.table({"query": query, "x1": x1, "x2": x2, "x3": x3, "city": city, "rel": relevance,
                     "click": click, "genres": genres, "flag_a": flag_a, "flag_b": flag_b})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("kinds") / "run"
    polytask.fit(train=make_table(60, 10, 0), validation=make_table(20, 10, 1), tasks=TASKS, model=MODEL,
                 out=out, **OPTIONS)
    return out


def test_trains_and_scores_every_kind(run_dir):
    run = load_run(run_dir)
    # the group, relevance and label columns are labels, not inferred features
    assert [f.name for f in run.preprocessor.features] == ["x1", "x2", "x3", "city"]
    val = run.metrics["validation"]
    assert set(val["rel"]) >= {"ndcg", "map", "count", "loss"} and 0 < val["rel"]["ndcg"] <= 1
    assert val["click"]["auc"] > 0.5
    assert set(val["genres"]) >= {"mean_auc", "micro_f1"} and val["genres"]["mean_auc"] > 0.5
    assert val["flags"]["count"] == 200 and math.isfinite(val["flags"]["mean_auc"])
    assert len(run.history) == 2


def test_predict_table_writes_every_kind(run_dir):
    run = load_run(run_dir)
    table = make_table(5, 4, 2)
    out = run.predict_table(table.drop(["rel", "click", "genres", "flag_a", "flag_b"]), keep=["query"])
    assert out.column_names == ["query", "rel", "click", "genres", "genres_proba", "flags", "flags_proba"]
    assert out.num_rows == 20
    assert pa.types.is_floating(out.schema.field("rel").type)
    assert set(n for row in out.column("genres").to_pylist() for n in row) <= {"comedy", "drama", "war"}
    assert all(len(p) == 3 for p in out.column("genres_proba").to_pylist())
    assert all(set(row) <= {"flag_a", "flag_b"} for row in out.column("flags").to_pylist())
    # evaluation on a labelled table goes through the same kinds
    metrics = run.evaluate(table)
    assert metrics["rel"]["count"] == int(np.sum(~np.isnan(table.column("rel").to_numpy(zero_copy_only=False))))
