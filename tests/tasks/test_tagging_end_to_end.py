"""``polytask.fit`` trains a BIO tagging task beside a sentence-level binary task through the
``tokens`` encoder; ``Run.predict_table`` writes one tag per kept token of every input row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import polytask

WIDTH = 8
WORDS = ["the", "a", "went", "to", "saw", "paris", "rome", "new", "york"]


def make_sentences(n: int, seed: int) -> pa.Table:
    """Random sentences of 2..11 words (some longer than WIDTH); 'paris'/'rome' are one-word LOC
    chunks, 'new york' a two-word one; ``has_city``: the sentence names paris or rome."""
    rng = np.random.default_rng(seed)
    texts, tags, has_city = [], [], []
    for _ in range(n):
        words: list[str] = []
        labels: list[str] = []
        while len(words) < rng.integers(2, 12):
            w = WORDS[rng.integers(0, 8)]  # never "york" alone
            if w == "new":
                words += ["new", "york"]
                labels += ["B-LOC", "I-LOC"]
            else:
                words.append(w)
                labels.append("B-LOC" if w in ("paris", "rome") else "O")
        texts.append(" ".join(words))
        tags.append(" ".join(labels))
        has_city.append(int("paris" in words or "rome" in words))
    return pa.table({"text": texts, "ner": tags, "has_city": has_city})


def test_tagging_trains_and_predicts_through_the_tokens_encoder():
    train, valid = make_sentences(300, 0), make_sentences(100, 1)
    run = polytask.fit(
        train=train, validation=valid,
        features={"sequence": [{"name": "text", "separator": " ", "max_len": WIDTH}]},
        tasks=[{"name": "ner", "kind": "tagging", "tokens": "text", "max_len": WIDTH, "scheme": "bio"},
               {"name": "has_city"}],
        model={"name": "shared_bottom", "bottom_hidden": [16], "tower_hidden": [8], "encoder": "tokens",
               "encoder_params": {"dim": 16}},
        epochs=6, batch_size=32, progress=False, seed=0, device="cpu", optimizer={"name": "adam", "lr": 0.02},
    )
    assert run.tasks[0].classes == ["O", "B-LOC", "I-LOC"]
    val = run.metrics["validation"]["ner"]
    assert set(val) >= {"token_accuracy", "span_f1", "count", "loss"} and val["count"] == 100
    print(f"tagging after 6 epochs: token accuracy {val['token_accuracy']:.3f}, span F1 {val['span_f1']:.3f}")
    # the tag is a function of the word (and "york" of "new"): both near 1
    assert val["token_accuracy"] > 0.9 and val["span_f1"] > 0.8
    out = run.predict_table(valid.drop(["ner", "has_city"]))
    assert out.column_names == ["ner", "has_city"]
    texts = valid.column("text").to_pylist()
    predicted = out.column("ner").to_pylist()
    for text, tags in zip(texts, predicted):
        assert len(tags.split(" ")) == min(len(text.split(" ")), WIDTH)  # one tag per kept token
        assert set(tags.split(" ")) <= {"O", "B-LOC", "I-LOC"}
