"""The ``dependency`` kind (head selection + relation labels, JMT Sec. 2.4): the output layout,
the loss by hand, UAS/LAS with known answers, encoding with truncation and shifted heads,
predictions in the row's own numbering, errors naming file, column and row."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F

from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec
from polytask.errors import ConfigError, DataError
from polytask.tasks import Task
from polytask.tasks.dependency import relation_logits

RELS = ["nsubj", "root"]  # relation ids 0, 1


def dep_task(**options) -> Task:
    return Task("dep", "dependency", **{"label": "heads", "tokens": "text", "relations": "deprel", "max_len": 4,
                                        "classes": RELS, **options})


def encode_label(heads: list[list[int]], rels: list[list[int]], max_len: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    label = torch.zeros(len(heads), max_len, dtype=torch.long)
    mask = torch.zeros(len(heads), max_len, dtype=torch.bool)
    for i, (h, r) in enumerate(zip(heads, rels)):
        for p, (hh, rr) in enumerate(zip(h, r)):
            label[i, p] = hh + (max_len + 1) * rr
            mask[i, p] = True
    return label, mask


def scores(b: int, length: int, c: int, r: int, predicted: list[list[int]]) -> torch.Tensor:
    """Outputs ``[b, length, c + 3r]`` whose head scores put 5 on the ``predicted`` head."""
    out = torch.zeros(b, length, c + 3 * r)
    for i, row in enumerate(predicted):
        for p, j in enumerate(row):
            out[i, p, j] = 5.0
    return out


# -- layout and options -----------------------------------------------------------------------------
def test_output_dim_layout_and_options():
    task = dep_task()
    assert task.level == "token" and not task.spec.scalar_output and task.spec.head_selection
    assert task.output_dim == 4 + 1 + 3 * 2
    assert task.spec.label_columns(task) == ["heads", "deprel"]
    assert task.metrics == ("uas", "las")
    plain = Task("dep", "dependency", label="heads", tokens="text", max_len=6)
    assert plain.output_dim == 7 and plain.metrics == ("uas",) and plain.spec.label_columns(plain) == ["heads"]
    assert Task(**task.to_dict()).spec.options() == task.spec.options()
    with pytest.raises(ValueError, match="set relations"):
        Task("dep", "dependency", tokens="text", classes=["a"])


def test_relation_logits_are_a_t_plus_c_of_the_head():
    """Known answer: token t with head j scores relations a_t + c_j (c_0 the root's part)."""
    r, length = 2, 3
    out = torch.zeros(1, length, length + 1 + 3 * r)
    c = length + 1
    for t in range(length):
        out[0, t, c : c + r] = torch.tensor([10.0 * (t + 1), 0.0])  # a_t
        out[0, t, c + r : c + 2 * r] = torch.tensor([0.0, float(t + 1)])  # c_t (token t+1 as head)
        out[0, t, c + 2 * r :] = torch.tensor([-1.0, -2.0])  # c_0
    logits = relation_logits(out, torch.tensor([[2, 0, 3]]), r)
    expected = torch.tensor([[[10.0, 2.0], [20.0 - 1.0, -2.0], [30.0, 3.0]]])
    torch.testing.assert_close(logits, expected)


# -- loss -----------------------------------------------------------------------------------------
def test_loss_is_head_cross_entropy_plus_relation_cross_entropy_at_the_gold_head():
    task = dep_task(max_len=2)
    # one row of 2 tokens: token 1 <- head 2 (nsubj), token 2 <- root (root); C = 3, R = 2
    out = torch.tensor([[[0.1, 0.2, 1.5, 0.3, -0.4, 0.5, 0.6, 0.7, -0.8],
                         [2.0, -1.0, 0.0, -0.2, 0.9, 1.1, -1.2, 0.4, 0.8]]], requires_grad=True)
    label = torch.tensor([[2 + 3 * 0, 0 + 3 * 1]])
    mask = torch.ones(1, 2, dtype=torch.bool)

    def ce(logits: list[float], y: int) -> float:
        return -logits[y] + math.log(sum(math.exp(v) for v in logits))

    # token 1: relation logits a_1 + c_2 (c_2 from token 2's row); token 2: a_2 + c_0 (its own row's root part)
    t1 = ce([0.1, 0.2, 1.5], 2) + ce([0.3 + 1.1, -0.4 - 1.2], 0)
    t2 = ce([2.0, -1.0, 0.0], 0) + ce([-0.2 + 0.4, 0.9 + 0.8], 1)
    loss = task.loss(out, label, mask)
    assert loss.item() == pytest.approx((t1 + t2) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(out.grad).all()
    # without relations: the head cross-entropy alone
    plain = Task("dep", "dependency", label="heads", tokens="text", max_len=2)
    assert plain.loss(out.detach()[..., :3], torch.tensor([[2, 0]]), mask).item() == pytest.approx(
        (ce([0.1, 0.2, 1.5], 2) + ce([2.0, -1.0, 0.0], 0)) / 2, rel=1e-6)


def test_loss_and_metrics_take_a_plain_head_of_output_dim_at_any_batch_width():
    """A per-token head of width output_dim (C = max_len + 1) on a batch trimmed to L < max_len."""
    task = dep_task(max_len=6)
    label, mask = encode_label([[2, 0, 2]], [[0, 1, 0]], max_len=6)
    out = torch.randn(1, 3, task.output_dim)
    assert torch.isfinite(task.loss(out, label[:, :3], mask[:, :3]))
    out = scores(1, 3, 7, 2, [[2, 0, 2]])
    out[0, :, 6] = 50.0  # candidate 6 does not exist in a 3-token row: ignored
    assert task.spec.compute_metrics(out, label[:, :3], mask[:, :3])["uas"] == 1.0
    with pytest.raises(ValueError, match="needs at least 10"):
        task.loss(torch.zeros(1, 3, 9), label[:, :3], mask[:, :3])


# -- metrics ----------------------------------------------------------------------------------------
def test_uas_and_las_known_answer():
    task = dep_task()
    # row 0: heads 2 0 2 (nsubj root nsubj); row 1: heads 0 1 (root nsubj)
    label, mask = encode_label([[2, 0, 2], [0, 1]], [[0, 1, 0], [1, 0]])
    out = scores(2, 4, 5, 2, [[2, 0, 1], [0, 1]])  # row 0, token 3 attached wrongly
    out[1, 1, 4] = 9.0  # candidate 4 is beyond row 1 (2 tokens): must be ignored
    c, r = 5, 2
    out[:, :, c + 2 * r :] = torch.tensor([0.0, 3.0])  # c_0 favours root
    out[0, 1, c + r : c + 2 * r] = torch.tensor([2.0, 0.0])  # token 2 of row 0 as a head favours nsubj
    out[1, 0, c + r : c + 2 * r] = torch.tensor([2.0, 0.0])  # token 1 of row 1 as a head favours nsubj
    out[0, 0, c : c + r] = torch.tensor([0.0, 5.0])  # a_1 of row 0: root wins at head 2 (gold: nsubj)
    out[1, 2:] = float("nan")  # padding may hold anything
    out[0, 3] = float("nan")
    m = task.spec.compute_metrics(out, label, mask)
    assert m["count"] == 2
    # heads right: row 0 tokens 1, 2; row 1 tokens 1, 2 -> 4 of 5
    assert m["uas"] == pytest.approx(4 / 5)
    # labelled: row 0 token 2 (root), row 1 token 1 (root via c_0) and token 2 (nsubj via c_1) -> 3 of 5
    assert m["las"] == pytest.approx(3 / 5)
    # a token left unlabelled is not scored
    mask2 = mask.clone()
    mask2[0, 2] = False
    assert task.spec.compute_metrics(out, label, mask2)["uas"] == pytest.approx(1.0)


def test_uas_known_answer_against_a_direct_count():
    rng = np.random.default_rng(0)
    task = Task("dep", "dependency", label="heads", tokens="text", max_len=6)
    lengths = rng.integers(1, 7, 30)
    # token p (1-based) hangs on any of 0..n but itself
    heads = [[int(rng.choice([j for j in range(n + 1) if j != p + 1])) for p in range(n)] for n in lengths]
    label, mask = encode_label(heads, [[0] * n for n in lengths], max_len=6)
    out = torch.from_numpy(rng.normal(size=(30, 6, 7))).float()

    def best_of(scores: torch.Tensor, own: int) -> int:
        return max((j for j in range(len(scores)) if j != own), key=lambda j: float(scores[j]))

    best = [[best_of(out[i, p, : n + 1], p + 1) for p in range(n)] for i, n in enumerate(lengths)]
    right = sum(b == h for bs, hs in zip(best, heads) for b, h in zip(bs, hs))
    assert task.spec.compute_metrics(out, label, mask)["uas"] == pytest.approx(right / lengths.sum())


# -- encoding -----------------------------------------------------------------------------------------
def test_encoding_by_hand_with_truncation_and_shifted_heads():
    # row 0 keeps its last 4 of 6 tokens (tokens 3..6 -> positions 1..4): heads shift by 2; token 3's
    # head (1) was dropped -> masked; row 1 short; row 2 unlabelled
    table = pa.table({
        "text": ["a b c d e f", "g h", "i"],
        "heads": [[2, 0, 1, 3, 6, 4], [0, 1], None],
        "deprel": [["nsubj", "root", "obj", "obj", "nsubj", "obj"], ["root", "nsubj"], None],
    })
    task = dep_task(classes=None)
    task.spec.fit(table, task, "train.csv")
    assert task.spec.classes == ["nsubj", "obj", "root"]
    label, mask = task.spec.encode(table, task, "train.csv")
    w = 5  # max_len + 1
    assert label.dtype == np.int64 and label.shape == mask.shape == (3, 4)
    assert mask.tolist() == [[False, True, True, True], [True, True, False, False], [False] * 4]
    assert label.tolist() == [[0, 1 + w * 1, 4 + w * 0, 2 + w * 1], [0 + w * 2, 1 + w * 0, 0, 0], [0, 0, 0, 0]]


def test_string_columns_and_missing_items():
    table = pa.table({"text": ["a b c"], "heads": ["2 0 x"], "deprel": ["nsubj root nsubj"]})
    with pytest.raises(DataError, match=r"valid\.csv: head column 'heads' holds 'x' at row 0"):
        dep_task().spec.encode(table, dep_task(), "valid.csv")
    table = pa.table({"text": ["a b c"], "heads": [[2, None, 2]], "deprel": [["nsubj", "root", None]]})
    label, mask = dep_task().spec.encode(table, dep_task(), "train")
    assert mask.tolist() == [[True, False, False, False]] and label[0, 0] == 2


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({"heads": [[0, 1], [0, 1]]}, r"valid\.csv: head column 'heads' of task 'dep' holds 2 heads at row 1 but text column 'text' holds 3"),
        ({"heads": [[0, 1], [0, 4, 1]]}, r"valid\.csv: head column 'heads' holds head 4 at row 1, outside 0\.\.3"),
        ({"heads": [[0, 1], [0, -1, 1]]}, r"valid\.csv: head column 'heads' holds head -1 at row 1"),
        ({"heads": [[0, 1], [0, 2, 1]]}, r"valid\.csv: head column 'heads' makes token 2 its own head at row 1"),
        ({"heads": [[0, 1], [0, 1.5, 1]]}, r"valid\.csv: head column 'heads' holds 1\.5 at row 1, not a whole number"),
        ({"deprel": [["root", "nsubj"], ["root"]]}, r"valid\.csv: relation column 'deprel' of task 'dep' holds 1 relations at row 1"),
        ({"deprel": [["root", "nsubj"], None]}, r"valid\.csv: relation column 'deprel' of task 'dep' is empty at row 1"),
        ({"deprel": [["root", "nsubj"], ["root", "amod", "nsubj"]]}, r"valid\.csv: label column 'deprel' holds 'amod' at row 1"),
    ],
)
def test_errors_name_file_column_and_row(columns, match):
    data = {"text": ["a b", "c d e"], "heads": [[0, 1], [0, 1, 1]], "deprel": [["root", "nsubj"], ["root", "nsubj", "nsubj"]]}
    data.update(columns)
    with pytest.raises(DataError, match=match):
        dep_task().spec.encode(pa.table(data), dep_task(), "valid.csv")


# -- predictions ----------------------------------------------------------------------------------------
def test_predictions_in_the_rows_own_numbering_round_trip():
    table = pa.table({
        "text": ["a b c d e f", "g h", ""],
        "heads": [[2, 0, 2, 3, 6, 4], [0, 1], []],
        "deprel": [["nsubj", "root", "nsubj", "root", "nsubj", "root"], ["root", "nsubj"], []],
    })
    task = dep_task()
    label, mask = task.spec.encode(table, task, "train")
    # outputs that pick the gold heads and relations where labelled (position 1 of row 0 lost its head)
    head, rel = label % 5, label // 5
    out = torch.zeros(3, 4, task.output_dim)
    c = 5
    out.scatter_(2, torch.from_numpy(head).unsqueeze(-1), 5.0)
    # relations: a_t one-hot on the gold relation (c parts 0)
    out[..., c : c + 2] = 4.0 * F.one_hot(torch.from_numpy(rel), 2).float()
    pred = task.predict(out).numpy()
    cols = task.spec.prediction_columns("dep", pred, table.drop(["heads", "deprel"]))
    # row 0 keeps tokens 3..6; token 3's head (2) was cut, its output picks candidate 0 (root)
    assert cols["dep"].to_pylist() == ["0 3 6 4", "0 1", ""]
    assert cols["dep_relation"].to_pylist() == ["nsubj root nsubj root", "root nsubj", ""]
    back = task.spec.label_predictions(task, pred, table)
    assert back["heads"].type == pa.list_(pa.int32()) and back["heads"].to_pylist() == [[0, 3, 6, 4], [0, 1], []]
    assert back["deprel"].to_pylist() == [["nsubj", "root", "nsubj", "root"], ["root", "nsubj"], []]
    kept = pa.table({"text": ["c d e f", "g h", ""], "heads": [[0, 1, 4, 2], [0, 1], []],
                     "deprel": back["deprel"]})
    label2, mask2 = task.spec.encode(kept, task, "predictions")
    np.testing.assert_array_equal(label2[mask], label[mask])


def test_predictions_ignore_candidates_beyond_the_row():
    task = Task("dep", "dependency", label="heads", tokens="text", max_len=4)
    out = torch.zeros(1, 4, 5)
    out[0, 0, 4] = 9.0  # the row has 2 tokens: candidate 4 is not a token
    out[0, 0, 2] = 1.0
    out[0, 1, 2] = 7.0  # token 2 cannot be its own head
    out[0, 1, 1] = 3.0
    cols = task.spec.prediction_columns("dep", out.numpy(), pa.table({"text": ["a b"]}))
    assert cols["dep"].to_pylist() == ["2 1"] and list(cols) == ["dep"]


# -- the preprocessor ----------------------------------------------------------------------------------
def test_preprocessor_binds_the_text_feature_and_encodes_both_columns():
    table = pa.table({"text": ["a b c d e", "f g"], "heads": [[2, 0, 1, 5, 3], [0, 1]],
                      "deprel": [["nsubj", "root", "obj", "obj", "nsubj"], ["root", "obj"]]})
    task = Task("dep", "dependency", label="heads", tokens="text", relations="deprel")
    pre = Preprocessor([FeatureSpec("text", "sequence", max_len=4, separator=" ")], [task])
    assert {"heads", "deprel"} <= set(pre.required_columns())
    tt = pre.fit(table, "train").transform(table, "train")
    assert task.spec.max_len == 4 and task.output_dim == 5 + 9
    assert tt.labels["dep"].shape == tt.masks["dep"].shape == tt.features["seq:text"].shape == (2, 4)
    # token 1 is cut; token 3 (position 2) hangs on it: masked
    assert tt.masks["dep"].tolist() == [[True, False, True, True], [True, True, False, False]]
    with pytest.raises(ConfigError, match="'text' is a categorical feature; dependency parsing needs a sequence"):
        Preprocessor([FeatureSpec("text", "categorical")], [Task("dep", "dependency", label="heads", tokens="text")])


# -- end to end ---------------------------------------------------------------------------------------
def _parsed_sentences(n: int, seed: int) -> pa.Table:
    """Chains: every token hangs on the previous one (the first on the root); 'det' after 'the'
    ... relations from the dependent's word; ``sim`` in [1, 5] from the share of city names."""
    words = ["the", "a", "went", "to", "saw", "paris", "rome", "new"]
    rng = np.random.default_rng(seed)
    texts, heads, rels, sims = [], [], [], []
    for _ in range(n):
        k = int(rng.integers(2, 9))
        w = [words[i] for i in rng.integers(0, len(words), k)]
        texts.append(" ".join(w))
        heads.append([0] + list(range(1, k)))
        rels.append(["root"] + ["det" if x == "the" else "dep" for x in w[1:]])
        sims.append(1 + 4 * sum(x in ("paris", "rome") for x in w) / k)
    return pa.table({"text": texts, "heads": heads, "deprel": rels, "sim": sims})


def test_dependency_and_relatedness_train_save_and_load_with_ngrams_and_pretrained_vectors(tmp_path):
    import polytask

    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 8\nthe " + " ".join(["0.5"] * 8) + "\nParis " + " ".join(["-0.5"] * 8) + "\n")
    run = polytask.fit(
        train=_parsed_sentences(150, 0), validation=_parsed_sentences(40, 1),
        features={"sequence": [{"name": "text", "separator": " ", "max_len": 6, "char_ngrams": [2, 3]}]},
        tasks=[{"name": "dep", "label": "heads", "kind": "dependency", "tokens": "text", "relations": "deprel"},
               {"name": "sim", "kind": "relatedness"}],
        model={"name": "shared_bottom", "bottom_hidden": [32], "tower_hidden": [16], "encoder": "tokens",
               "encoder_params": {"dim": 8, "char_ngrams": True, "embeddings": str(vectors)}},
        epochs=6, batch_size=25, progress=False, seed=0, device="cpu", optimizer={"name": "adam", "lr": 0.03},
    )
    val = run.metrics["validation"]
    assert set(val["dep"]) >= {"uas", "las", "count", "loss"} and set(val["sim"]) >= {"pearson", "spearman", "mse"}
    # a plumbing check (the formulas have known-answer tests above): chance is about 1 / 5
    assert val["dep"]["uas"] > 0.5 and val["sim"]["pearson"] > 0.5, val
    new = _parsed_sentences(5, 2).drop(["heads", "deprel", "sim"])
    out = run.predict_table(new)
    for text, heads in zip(new.column("text").to_pylist(), out.column("dep").to_pylist()):
        assert len(heads.split(" ")) == min(len(text.split(" ")), 6)
    assert all(1 <= s <= 5 for s in out.column("sim").to_pylist())
    run.save(tmp_path / "run")
    vectors.unlink()  # a saved run does not need the vectors file
    again = polytask.load_run(tmp_path / "run")
    assert again.predict_table(new).to_pydict() == out.to_pydict()
