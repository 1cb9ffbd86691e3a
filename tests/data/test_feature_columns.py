"""Feature columns: ``embedding_dim`` per feature, ``shared_with`` (one vocabulary and one embedding
table for two columns), and a run using them with ``pooling: attention`` saved and reloaded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

import polytask
from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec, InputSpec
from polytask.encoders.tabular import TabularInput
from polytask.errors import ConfigError
from polytask.tasks import Task


def fitted(*features: FeatureSpec, table: pa.Table) -> Preprocessor:
    return Preprocessor(list(features), [Task("y")]).fit(table)


TABLE = pa.table({
    "item": ["a", "b", "a", None, "c"],
    "clicked": ["a|d", "d|d|b", "", "e", "a"],  # d and e are only ever clicked, c only a candidate
    "seen": ["c", "a", "a", "b", "e"],
    "x": [1.0, 2.0, 3.0, 4.0, 5.0],
    "y": [0, 1, 0, 1, 1],
})


# -- embedding_dim --------------------------------------------------------------------------
def test_embedding_dim_sets_the_features_width_and_is_saved_only_when_given():
    pre = fitted(FeatureSpec("item", "categorical", embedding_dim=6), FeatureSpec("seen", "categorical"),
                 FeatureSpec("clicked", "sequence", embedding_dim=3), FeatureSpec("x"), table=TABLE)
    spec = pre.input_spec()
    assert spec.embedding_dims == {"item": 6, "clicked": 3}
    assert InputSpec.from_dict(spec.to_dict()).embedding_dims == {"item": 6, "clicked": 3}
    enc = TabularInput(spec, embedding_dim=4)
    assert enc.out_dim == 1 + 6 + 4 + 3 and enc.categorical.num_tables == 2
    out = enc(pre.transform(TABLE, "train").features)
    assert out.shape == (5, 14)
    # a spec without the new options saves what it saved before they existed (old runs load as before)
    plain = fitted(FeatureSpec("item", "categorical"), table=TABLE).input_spec().to_dict()
    assert not {"embedding_dims", "shared", "targets"} & set(plain)
    assert not {"embedding_dim", "shared_with", "target"} & set(FeatureSpec("item", "categorical").to_dict())


@pytest.mark.parametrize("spec, message", [
    (dict(name="x", type="numeric", embedding_dim=4), "feature 'x': embedding_dim applies to categorical and sequence"),
    (dict(name="c", type="categorical", embedding_dim=0), "feature 'c': embedding_dim must be an integer >= 1, got 0"),
    (dict(name="c", type="categorical", embedding_dim=True), "embedding_dim must be an integer >= 1"),
    (dict(name="c", type="categorical", embedding_dim="8"), "embedding_dim must be an integer >= 1"),
    (dict(name="x", type="numeric", shared_with="c"), "feature 'x': shared_with applies to categorical and sequence"),
    (dict(name="c", type="categorical", shared_with="c"), "feature 'c': shared_with names the feature itself"),
    (dict(name="s", type="sequence", shared_with="t", vocabulary="t"), "shared_with does not combine with vocabulary"),
    (dict(name="s", type="sequence", pooling="attention"), "feature 's': pooling: attention and target go together"),
    (dict(name="s", type="sequence", target="c"), "pooling: attention and target go together"),
])
def test_bad_options_on_one_feature_are_one_config_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        FeatureSpec(**spec)


# -- shared_with ----------------------------------------------------------------------------
def test_one_vocabulary_fitted_on_both_columns_with_sequence_ids_one_above_categorical_ids():
    pre = fitted(FeatureSpec("item", "categorical"), FeatureSpec("clicked", "sequence", shared_with="item"), table=TABLE)
    vocab = pre.encoders["item"].vocab
    assert vocab == pre.encoders["clicked"].vocab and set(vocab) == {"a", "b", "c", "d", "e"}
    spec = pre.input_spec()
    assert spec.shared == {"clicked": "item"} and spec.sequences["clicked"] == spec.cardinalities[0] + 1
    probe = pa.table({"item": ["d", "a", "zzz"], "clicked": ["d", "a", "zzz"], "x": [0.0] * 3, "y": [0] * 3})
    batch = pre.transform(probe, "probe").features
    # the documented mapping: a value's sequence id is its categorical id + 1 (unknown: 0 -> 1)
    np.testing.assert_array_equal(batch["seq:clicked"][:, 0].numpy(), batch["categorical"][:, 0].numpy() + 1)
    assert batch["categorical"][2, 0] == 0 and batch["seq:clicked"][2, 0] == 1


def test_a_streamed_fit_gives_the_shared_vocabulary_of_the_whole_table():
    features = [FeatureSpec("item", "categorical"), FeatureSpec("clicked", "sequence", shared_with="item")]
    whole = Preprocessor(features, [Task("y")]).fit(TABLE)
    streamed = Preprocessor(features, [Task("y")])
    for chunk in (TABLE.slice(0, 2), TABLE.slice(2)):
        streamed.partial_fit(chunk, "train")
    streamed.finish("train")
    assert streamed.encoders["item"].vocab == streamed.encoders["clicked"].vocab == whole.encoders["item"].vocab


@pytest.mark.parametrize("categorical_first", [True, False])
def test_the_same_item_is_the_same_vector_through_both_features(categorical_first):
    # clicked shared_with item, or item shared_with clicked: one table either way
    item = FeatureSpec("item", "categorical", **({} if categorical_first else {"shared_with": "clicked"}))
    clicked = FeatureSpec("clicked", "sequence", **({"shared_with": "item"} if categorical_first else {}))
    seen = FeatureSpec("seen", "categorical", shared_with="item" if categorical_first else "clicked")
    pre = fitted(item, seen, clicked, table=TABLE)
    enc = TabularInput(pre.input_spec(), embedding_dim=3)
    assert len(enc.sequences) == 0 and enc.categorical.weight.shape == (len(pre.encoders["item"].vocab) + 1, 3)
    probe = pa.table({"item": ["d", "b", "q"], "seen": ["d", "b", "q"], "clicked": ["d", "b", "q"],
                      "x": [0.0] * 3, "y": [0] * 3})
    out = enc(pre.transform(probe, "probe").features)
    # [item | seen | mean of clicked]: one item in each history, so all three are its vector
    torch.testing.assert_close(out[:, 0:3], out[:, 3:6])
    torch.testing.assert_close(out[:, 0:3], out[:, 6:9])


def test_sequences_share_one_table_and_the_text_vocabulary_option_keeps_its_own():
    pre = fitted(FeatureSpec("clicked", "sequence"), FeatureSpec("seen", "sequence", shared_with="clicked"), table=TABLE)
    enc = TabularInput(pre.input_spec(), embedding_dim=2)
    assert list(enc.sequences) == ["clicked"] and pre.encoders["seen"].vocab == pre.encoders["clicked"].vocab
    text = fitted(FeatureSpec("clicked", "sequence"), FeatureSpec("seen", "sequence", vocabulary="clicked"), table=TABLE)
    assert text.encoders["seen"].vocab == text.encoders["clicked"].vocab
    assert list(TabularInput(text.input_spec(), embedding_dim=2).sequences) == ["clicked", "seen"]


def test_two_hashed_categoricals_with_the_same_buckets_share_a_table():
    pre = fitted(FeatureSpec("item", "categorical", hash_buckets=16),
                 FeatureSpec("seen", "categorical", hash_buckets=16, shared_with="item"), table=TABLE)
    batch = pre.transform(TABLE, "train").features["categorical"]
    assert batch[1, 1] == batch[0, 0] != batch[0, 1]  # "a" in both columns, "c" elsewhere
    enc = TabularInput(pre.input_spec(), embedding_dim=2)
    assert enc.categorical.weight.shape == (17, 2)


@pytest.mark.parametrize("features, message", [
    ([FeatureSpec("clicked", "sequence", shared_with="nope")],
     "feature 'clicked': shared_with 'nope' is not a declared categorical or sequence feature"),
    ([FeatureSpec("x"), FeatureSpec("clicked", "sequence", shared_with="x")], "shared_with 'x' is not a declared categorical"),
    ([FeatureSpec("item", "categorical", shared_with="seen"), FeatureSpec("seen", "categorical"),
      FeatureSpec("clicked", "sequence", shared_with="item")],
     "feature 'clicked': shared_with 'item', which shares the vocabulary of 'seen': name 'seen' directly"),
    ([FeatureSpec("item", "categorical", embedding_dim=4), FeatureSpec("clicked", "sequence", shared_with="item", embedding_dim=8)],
     "feature 'clicked': shared_with 'item': one embedding table, so embedding_dim must be the same on both"),
    ([FeatureSpec("item", "categorical", hash_buckets=8), FeatureSpec("seen", "categorical", shared_with="item")],
     "feature 'seen': shared_with 'item': hash_buckets must be on both"),
    ([FeatureSpec("item", "categorical", hash_buckets=8), FeatureSpec("seen", "categorical", hash_buckets=9, shared_with="item")],
     "hash_buckets must be on both \\(the same count\\)"),
    ([FeatureSpec("item", "categorical", hash_buckets=8), FeatureSpec("clicked", "sequence", shared_with="item")],
     "hash_buckets must be on both"),
    ([FeatureSpec("item", "categorical", min_count=2), FeatureSpec("clicked", "sequence", shared_with="item")],
     "feature 'clicked': shared_with 'item': one vocabulary, so min_count must be the same \\(1 vs 2\\)"),
    ([FeatureSpec("text", "sequence"), FeatureSpec("pair", "sequence", vocabulary="text"),
      FeatureSpec("clicked", "sequence", shared_with="text")], "feature 'clicked': shared_with 'text': 'text' is a text feature"),
    ([FeatureSpec("item", "categorical"), FeatureSpec("text", "sequence", shared_with="item"),
      FeatureSpec("pair", "sequence", vocabulary="text")], "'text' is a text feature"),
    ([FeatureSpec("item", "categorical"), FeatureSpec("clicked", "sequence", pooling="attention", target="item")],
     "feature 'clicked': pooling: attention compares its items with target 'item', which must be a declared categorical "
     "feature sharing its vocabulary"),
    ([FeatureSpec("seen", "sequence"), FeatureSpec("clicked", "sequence", shared_with="seen", pooling="attention",
                                                   target="seen")], "target 'seen', which must be a declared categorical"),
])
def test_bad_sharing_is_one_config_error(features, message):
    with pytest.raises(ConfigError, match=message):
        Preprocessor(features, [Task("y")])


# -- a run with all three, saved and reloaded --------------------------------------------------
def test_a_run_with_all_three_options_reloads_and_predicts_the_same(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    clicked = ["|".join(f"i{v}" for v in rng.choice(20, rng.integers(0, 6), replace=False)) for _ in range(n)]
    data = pd.DataFrame({"clicked": clicked, "item": [f"i{v}" for v in rng.integers(0, 20, n)],
                         "city": rng.choice(["x", "y", "z"], n), "y": rng.integers(0, 2, n)})
    features = {"categorical": [{"name": "item", "embedding_dim": 6}, {"name": "city", "embedding_dim": 2}],
                "sequence": [{"name": "clicked", "shared_with": "item", "pooling": "attention", "target": "item"}]}
    run = polytask.fit(train=data, validation=data, features=features, tasks=[{"name": "y"}], model="shared_bottom",
                       epochs=2, batch_size=64, progress=False, device="cpu", out=tmp_path / "run")
    spec = run.preprocessor.input_spec()
    assert (spec.embedding_dims, spec.shared, spec.targets) == ({"item": 6, "city": 2, "clicked": 6}, {"clicked": "item"},
                                                               {"clicked": "item"})
    again = polytask.load_run(tmp_path / "run")
    assert again.preprocessor.input_spec() == spec
    np.testing.assert_allclose(again.predict(data)["y"], run.predict(data)["y"], rtol=1e-6)
