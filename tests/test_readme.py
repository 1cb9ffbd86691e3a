"""The README's examples stay true: its YAML config validates, and the commands it shows exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from polytask.config import config_from_dict

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_block_validates():
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no yaml block"
    cfg = config_from_dict(yaml.safe_load(blocks[0]))
    assert cfg.model.name == "mmoe" and cfg.model.params()["num_experts"] == 8
    assert [t.name for t in cfg.data.tasks] == ["click", "buy", "rating"]


def test_readme_mentions_the_make_targets_and_cli_commands():
    text = README.read_text()
    for needle in ("make demo", "make test", "make install", "make bench", "polytask train", "polytask evaluate",
                   "polytask predict", "polytask list"):
        assert needle in text


def test_configs_directory_validates():
    for path in (README.parent / "configs").glob("*.yaml"):
        config_from_dict(yaml.safe_load(path.read_text()))


def test_readme_task_kinds_block_trains_on_a_table_with_those_columns():
    """The task-kinds example (text, tagging, BIO chunks, multiclass, multilabel, ranking, the
    tokens encoder) trains as written on a generated table with the columns it names."""
    import numpy as np
    import pyarrow as pa

    import polytask

    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    raw = next(yaml.safe_load(b) for b in blocks if "kind: tagging" in b)
    rng = np.random.default_rng(0)
    words = {"DET": ["the", "a"], "NOUN": ["cat", "dog"], "VERB": ["sees", "eats"]}
    rows = []
    for i in range(80):
        tags = ["DET", "NOUN", "VERB", "DET", "NOUN"][: rng.integers(2, 6)]
        chunks = ["B-NP", "I-NP", "B-VP", "B-NP", "I-NP"][: len(tags)]
        rows.append({"text": " ".join(rng.choice(words[t]) for t in tags), "pos": " ".join(tags),
                     "chunk": " ".join(chunks), "length": float(len(tags)), "topic": ["a", "b", "c"][i % 3],
                     "spam": i % 2, "offensive": (i // 2) % 2, "relevance": float(i % 4), "query_id": f"q{i // 8}"})
    table = pa.Table.from_pylist(rows)
    data = {k: v for k, v in raw["data"].items() if k != "train"}
    run = polytask.fit({**raw, "data": data}, train=table, epochs=1, batch_size=16, progress=False)
    metrics = run.metrics["validation"]
    assert set(metrics["pos"]) >= {"token_accuracy"} and "span_f1" in metrics["chunk"]
    assert {"mean_auc"} <= set(metrics["flags"]) and {"ndcg", "map"} <= set(metrics["relevance"])
    predictions = run.predict_table(table)
    assert len(predictions.column("pos")[0].as_py().split(" ")) == len(rows[0]["text"].split(" "))
