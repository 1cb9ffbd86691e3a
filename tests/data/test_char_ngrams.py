"""Character n-grams of text features and vocabularies shared between text features."""

from __future__ import annotations

import pyarrow as pa
import pytest

from polytask.data.encoders import char_ngrams
from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec
from polytask.errors import ConfigError, DataError
from polytask.tasks import Task


def test_char_ngrams_of_a_word_boundaries_first():
    # "<cat>": 2-grams <c ca at t>, 3-grams <ca cat at>
    assert char_ngrams("cat", [2, 3], 100) == ["<c", "t>", "<ca", "at>", "ca", "at", "cat"]
    assert char_ngrams("cat", [2, 3], 3) == ["<c", "t>", "<ca"]
    assert char_ngrams("a", [2, 3, 4], 100) == ["<a", "a>", "<a>"]


def table() -> pa.Table:
    return pa.table({
        "words": [["The", "cat", "sat"], ["a", "dog"], ["cat", "cat"]],
        "words_b": [["dog", "sat"], None, ["bird"]],
        "y": [1, 0, 1],
    })


def fit(features) -> Preprocessor:
    return Preprocessor(features, [Task("y")]).fit(table())


def test_ngram_ids_follow_the_token_positions():
    pre = fit([FeatureSpec("words", "sequence", max_len=4, char_ngrams=[2, 3], max_ngrams=5)])
    enc = pre.encoders["words"]
    out = pre.transform(table())
    ngrams = out.features["ngrams:words"]
    assert ngrams.shape == (3, 4, 5) and ngrams.dtype.is_floating_point is False
    ids = {g: i + 2 for i, g in enumerate(enc.ngram_vocab)}
    # row 0, position 1 is "cat": its first five n-grams
    assert ngrams[0, 1].tolist() == [ids[g] for g in char_ngrams("cat", [2, 3], 5)]
    # padding positions hold no n-gram; the spec reports the n-gram vocabulary size
    assert ngrams[1, 2:].eq(0).all() and ngrams[0, 3].eq(0).all()
    assert pre.input_spec().ngrams == {"words": len(enc.ngram_vocab) + 2}
    # an unseen word's n-grams: known ones keep their ids, unseen ones are 1
    new = pre.transform(pa.table({"words": [["cats"]], "y": [1]}))
    grams = char_ngrams("cats", [2, 3], 5)
    assert new.features["ngrams:words"][0, 0].tolist() == [ids.get(g, 1) for g in grams]
    assert new.features["seq:words"][0, 0] == 1  # the word itself is unknown


def test_ngram_state_round_trips_through_the_saved_encoders():
    pre = fit([FeatureSpec("words", "sequence", max_len=4, char_ngrams=[2, 3])])
    again = Preprocessor.from_dict(pre.to_dict())
    a, b = pre.transform(table()), again.transform(table())
    assert (a.features["ngrams:words"] == b.features["ngrams:words"]).all()


def test_a_shared_vocabulary_gives_the_same_word_the_same_id():
    pre = fit([FeatureSpec("words", "sequence", max_len=4),
               FeatureSpec("words_b", "sequence", max_len=4, vocabulary="words")])
    out = pre.transform(table())
    a, b = out.features["seq:words"], out.features["seq:words_b"]
    vocab = pre.encoders["words"].vocab
    assert pre.encoders["words_b"].vocab == vocab and "bird" in vocab  # fitted on both columns
    assert b[0, 0] == vocab.index("dog") + 2 and a[1, 1] == vocab.index("dog") + 2
    assert pre.input_spec().sequences["words_b"] == pre.input_spec().sequences["words"]
    assert b[1].eq(0).all()  # a missing second sentence is empty


def test_sharing_a_vocabulary_is_checked():
    with pytest.raises(DataError, match="'words_b' shares the vocabulary of 'text', which is not a declared sequence"):
        Preprocessor([FeatureSpec("words", "sequence"), FeatureSpec("words_b", "sequence", vocabulary="text")], [Task("y")])
    with pytest.raises(DataError, match="char_ngrams, max_ngrams and min_count must be the same"):
        Preprocessor([FeatureSpec("words", "sequence", char_ngrams=[2]),
                      FeatureSpec("words_b", "sequence", vocabulary="words")], [Task("y")])
    with pytest.raises(ConfigError, match="sequence features only"):
        FeatureSpec("x", "numeric", char_ngrams=[2])
