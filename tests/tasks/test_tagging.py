"""The ``tagging`` kind: labels aligned with the sequence encoder, masked per-token cross-entropy,
token accuracy, span F1 (seqeval), predictions as tag strings, and the preprocessor's checks."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from polytask.data.encoders import SequenceEncoder
from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec
from polytask.errors import ConfigError, DataError
from polytask.tasks import Task

BIO = ["O", "B-X", "I-X", "B-Y", "I-Y"]


def bio_task(**options) -> Task:
    return Task("ner", "tagging", **{"tokens": "text", "scheme": "bio", "classes": BIO, "max_len": 4, **options})


def one_hot(ids: list[list[int]], classes: int = len(BIO)) -> torch.Tensor:
    """Logits whose arg-max is ``ids`` (rows padded with class 0 to the longest)."""
    width = max(len(r) for r in ids)
    out = torch.zeros(len(ids), width, classes)
    for i, row in enumerate(ids):
        for j, c in enumerate(row):
            out[i, j, c] = 5.0
    return out


# -- loss -----------------------------------------------------------------------------------------
def test_loss_is_masked_cross_entropy_by_hand():
    task = Task("pos", "tagging", tokens="text", max_len=3, num_classes=2)
    output = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [9.0, -9.0]],
                           [[0.5, 0.5], [1.0, 3.0], [-4.0, 4.0]]], requires_grad=True)
    label = torch.tensor([[0, 0, 1], [1, 1, 0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])  # padding / missing tags

    def ce(logits: list[float], y: int) -> float:
        return -logits[y] + math.log(sum(math.exp(v) for v in logits))

    expected = (ce([2.0, 0.0], 0) + ce([0.0, 1.0], 0) + ce([0.5, 0.5], 1)) / 3
    loss = task.loss(output, label, mask)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert (output.grad[~mask] == 0).all() and output.grad[mask].abs().sum() > 0
    # per row: mean over its labelled tokens
    per_row = task.per_example_loss(output.detach(), label, mask)
    assert per_row.tolist() == pytest.approx([(ce([2.0, 0.0], 0) + ce([0.0, 1.0], 0)) / 2, ce([0.5, 0.5], 1)], rel=1e-6)


# -- metrics --------------------------------------------------------------------------------------
def test_span_f1_and_token_accuracy_by_hand():
    task = bio_task()
    # row 0: gold X(0-1), Y(3); predicted X(0-1) only      -> 1 correct of 2 gold, 1 predicted
    # row 1: gold Y(0); predicted X(0)                      -> 0 correct of 1 gold, 1 predicted
    label = torch.tensor([[1, 2, 0, 3], [3, 0, 0, 0]])  # B-X I-X O B-Y | B-Y O (padding)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    m = task.spec.compute_metrics(one_hot([[1, 2, 0, 0], [1, 0]]), label, mask)  # B-X I-X O O | B-X O
    precision, recall = 1 / 2, 1 / 3
    assert m["span_f1"] == pytest.approx(2 * precision * recall / (precision + recall))  # 0.4
    assert m["token_accuracy"] == pytest.approx(4 / 6)  # row 0: 3 of 4 right, row 1: 1 of 2
    assert m["count"] == 2


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_span_f1_equals_seqeval_on_random_sequences(seed):
    from seqeval.metrics import f1_score

    rng = np.random.default_rng(seed)
    n, width = 40, 7
    task = bio_task(max_len=width)
    lengths = rng.integers(1, width + 1, n)
    gold_ids = rng.integers(0, len(BIO), (n, width))
    pred_ids = rng.integers(0, len(BIO), (n, width))
    mask = np.arange(width)[None, :] < lengths[:, None]
    mask[0, 0] = False  # a missing tag inside a row is left out of its sequence
    logits = torch.nn.functional.one_hot(torch.from_numpy(pred_ids), len(BIO)).float()
    m = task.spec.compute_metrics(logits, torch.from_numpy(gold_ids), torch.from_numpy(mask))
    y_true = [[BIO[c] for c, k in zip(g, keep) if k] for g, keep in zip(gold_ids, mask)]
    y_pred = [[BIO[c] for c, k in zip(p, keep) if k] for p, keep in zip(pred_ids, mask)]
    assert m["span_f1"] == pytest.approx(f1_score(y_true, y_pred), abs=1e-12)
    assert m["token_accuracy"] == pytest.approx((gold_ids == pred_ids)[mask].mean())


def test_no_span_f1_without_bio_and_nan_without_gold_chunks():
    plain = Task("pos", "tagging", tokens="text", num_classes=3)
    assert plain.metrics == ("token_accuracy",)
    task = bio_task()
    m = task.spec.compute_metrics(one_hot([[1, 0]]), torch.tensor([[0, 0]]), torch.tensor([[True, True]]))
    assert math.isnan(m["span_f1"]) and m["token_accuracy"] == 0.5


# -- encoding -------------------------------------------------------------------------------------
def encoded_like_the_sequence_encoder(text: list, width: int, separator: str = " ") -> None:
    """Tags equal to the tokens: decoded labels must be the tokens the sequence encoder kept, at
    the same positions, and the mask exactly its non-padding positions."""
    table = pa.table({"text": text, "tags": text})
    task = Task("t", "tagging", label="tags", tokens="text", max_len=width, separator=separator)
    task.spec.fit(table, task, "train.csv")
    label, mask = task.spec.encode(table, task, "train.csv")
    enc = SequenceEncoder(FeatureSpec("text", "sequence", max_len=width, separator=separator))
    ids = enc.fit(table.column("text"), "train.csv").transform(table.column("text"), "train.csv")
    assert label.shape == mask.shape == ids.shape == (len(text), width) and label.dtype == np.int64
    np.testing.assert_array_equal(mask, ids != 0)
    for r, p in zip(*np.nonzero(mask)):
        assert str(task.classes[label[r, p]]) == enc.vocab[ids[r, p] - 2]
    assert not label[~mask].any()


def test_encoding_aligns_with_sequence_encoder_truncation():
    text = ["a b c d e f g", "h i", "", None, "j  k l m", " n o p q r ", "s"]
    encoded_like_the_sequence_encoder(text, width=4)
    encoded_like_the_sequence_encoder(text, width=1)
    encoded_like_the_sequence_encoder(text, width=10)


def test_encoding_aligns_for_list_columns():
    encoded_like_the_sequence_encoder([["a", "b", "c", "d", "e"], ["f"], [], None], width=3)


def test_encoding_keeps_the_last_tags_by_hand():
    table = pa.table({"text": ["w1 w2 w3 w4 w5", "w6"], "ner": ["B-X I-X O B-Y I-Y", "O"]})
    task = bio_task(max_len=3, classes=None)
    task.spec.fit(table, task, "train")
    assert task.classes == ["O", "B-X", "I-X", "B-Y", "I-Y"]
    label, mask = task.spec.encode(table, task, "train")
    assert label.tolist() == [[0, 3, 4], [0, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_missing_tags_are_masked():
    table = pa.table({"text": [["a", "b", "c"], ["d", "e"]], "ner": [["B-X", None, "O"], None]})
    task = bio_task(max_len=3)
    label, mask = task.spec.encode(table, task, "train")
    assert mask.tolist() == [[True, False, True], [False, False, False]]
    assert label.tolist() == [[1, 0, 0], [0, 0, 0]]


def test_tag_count_mismatch_names_file_column_and_row():
    table = pa.table({"text": ["a b", "c d e", "f g"], "ner": ["O O", "O O e", "O"]})
    task = Task("ner", "tagging", tokens="text", max_len=4, classes=["O", "e"])
    with pytest.raises(DataError, match=r"valid\.csv.*'ner'.*1 tags at row 2.*'text' holds 2 tokens"):
        task.spec.encode(table, task, "valid.csv")


def test_unknown_tag_names_the_table_row():
    table = pa.table({"text": ["a b", "c d e"], "ner": ["O B-X", "O B-Z I-Z"]})
    with pytest.raises(DataError, match=r"valid\.csv.*'ner' holds 'B-Z' at row 1"):
        bio_task().spec.encode(table, bio_task(), "valid.csv")


def test_bio_classes_hold_both_prefixes_and_reject_other_tags():
    task = bio_task(classes=None)
    task.spec.fit(pa.table({"text": ["a b"], "ner": ["B-LOC O"]}), task, "train")
    assert task.classes == ["O", "B-LOC", "I-LOC"] and task.output_dim == 3
    bad = bio_task(classes=None)
    with pytest.raises(DataError, match="train: tag column 'ner'.*'PER'"):
        bad.spec.fit(pa.table({"text": ["a b"], "ner": ["PER O"]}), bad, "train")
    with pytest.raises(ValueError, match="'PER' is not a BIO tag"):
        bio_task(classes=["O", "PER"])


def test_plain_tags_fitted_like_multiclass():
    task = Task("pos", "tagging", tokens="text")
    task.spec.fit(pa.table({"text": ["a b c"], "pos": ["NN VB NN"]}), task, "train")
    assert task.classes == ["NN", "VB"] and task.output_dim == 2
    assert Task(**task.to_dict()).classes == ["NN", "VB"]


# -- predictions ----------------------------------------------------------------------------------
def test_predictions_round_trip_through_encoding():
    table = pa.table({"text": ["a b c d e f", "g h", "i", ""], "ner": ["O O B-X I-X O B-Y", "B-Y I-Y", "O", ""]})
    task = bio_task(max_len=4)
    label, mask = task.spec.encode(table, task, "train")
    prediction = task.predict(torch.nn.functional.one_hot(torch.from_numpy(label), len(BIO)).float() * 5).numpy()
    cols = task.spec.prediction_columns("ner", prediction, table.drop(["ner"]))
    assert list(cols) == ["ner"]
    # one tag per kept token: a 6-token row gets tags for its last 4 tokens
    assert cols["ner"].to_pylist() == ["B-X I-X O B-Y", "B-Y I-Y", "O", ""]
    kept = pa.table({"text": ["c d e f", "g h", "i", ""], "ner": cols["ner"]})
    label2, mask2 = task.spec.encode(kept, task, "predictions")
    np.testing.assert_array_equal(label2, label)
    np.testing.assert_array_equal(mask2, mask)


# -- the preprocessor's checks --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (None, "task 'ner': text feature 'text' is not a declared feature"),
        (FeatureSpec("text", "categorical"), "task 'ner': text feature 'text' is a categorical feature"),
        (FeatureSpec("text", "sequence", max_len=9, separator=" "), "'text' has max_len 9 but the task has max_len 4"),
        (FeatureSpec("text", "sequence", max_len=4), r"'text' is split on '\|' but the task's tags on ' '"),
    ],
)
def test_preprocessor_checks_the_text_feature(feature, message):
    features = [FeatureSpec("x", "numeric")] + ([feature] if feature else [])
    with pytest.raises(ConfigError, match=message):
        Preprocessor(features, [bio_task(separator=" ")])


def test_max_len_and_separator_default_to_the_text_feature():
    task = Task("pos", "tagging", tokens="text")
    Preprocessor([FeatureSpec("text", "sequence", max_len=7, separator="/")], [task])
    assert (task.spec.max_len, task.spec.separator) == (7, "/")
    assert Task(**task.to_dict()).spec.options() == task.spec.options()  # a saved run keeps them


def test_preprocessor_encodes_tags_beside_the_text():
    table = pa.table({"x": [1.0, 2.0], "text": ["a b c d e", "f"], "ner": ["O O B-X I-X O", "B-Y"]})
    pre = Preprocessor([FeatureSpec("x"), FeatureSpec("text", "sequence", max_len=4, separator=" ")],
                       [bio_task(classes=None)])
    assert "ner" in pre.required_columns()
    tt = pre.fit(table, "train").transform(table, "train")
    assert tt.labels["ner"].shape == tt.masks["ner"].shape == tt.features["seq:text"].shape == (2, 4)
    np.testing.assert_array_equal(tt.masks["ner"].numpy(), tt.features["seq:text"].numpy() != 0)
    again = Preprocessor.from_dict(pre.to_dict())
    assert again.tasks[0] == pre.tasks[0]
