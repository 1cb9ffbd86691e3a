"""``polytask predict RUN INPUT -o out.conllu`` (and ``.conll``): the input's sentences written
back in their own format with the predicted tags in the label column, nothing else changed.

A tiny tagging run is trained through :func:`polytask.fit` on a CoNLL-U file written here (the
tag is a function of the word, so a few epochs learn it); some sentences are longer than the
text feature's ``max_len``, so their first tokens get no prediction (``_``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import polytask
from polytask.cli import app
from polytask.data.io import read_table
from polytask.data.text_formats import read_conll_columns, read_conllu, write_conll_columns, write_conllu
from polytask.fileio import write_predictions

WIDTH = 8
LEXICON = {"the": ("DET", "DT"), "a": ("DET", "DT"), "dog": ("NOUN", "NN"), "cat": ("NOUN", "NN"),
           "runs": ("VERB", "VBZ"), "sees": ("VERB", "VBZ"), "big": ("ADJ", "JJ"), "it": ("PRON", "PRP")}
WORDS = sorted(LEXICON)

runner = CliRunner()


def make_conllu(path: Path, n: int, seed: int) -> Path:
    """``n`` random sentences of 2..11 words (some longer than WIDTH) with comments, a multiword
    token in every third sentence and an empty node in every fifth; UPOS/XPOS follow the word."""
    rng = np.random.default_rng(seed)
    lines: list[str] = []
    for s in range(n):
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(2, 12))]
        lines += [f"# sent_id = {seed}-{s}", f"# text = {' '.join(words)}"]
        for i, w in enumerate(words, 1):
            if s % 3 == 0 and i == 2 and len(words) > 2:
                lines.append(f"2-3\t{words[1]}{words[2]}\t_\t_\t_\t_\t_\t_\t_\t_")
            upos, xpos = LEXICON[w]
            head = 0 if i == 1 else 1
            lines.append(f"{i}\t{w}\t{w}\t{upos}\t{xpos}\t_\t{head}\t{'root' if head == 0 else 'dep'}\t{head}:dep\t_")
            if s % 5 == 0 and i == 1:
                lines.append(f"1.1\t{w}\t{w}\t{upos}\t{xpos}\t_\t_\t_\t1:dep\tCopyOf=1")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("conllu")
    return {name: make_conllu(d / f"{name}.conllu", n, seed) for name, n, seed in (("train", 300, 0), ("dev", 60, 1), ("new", 40, 2))}


def fit_tagger(train, validation, label: str, out: Path, scheme: str = "none") -> Path:
    polytask.fit(
        train=train, validation=validation,
        features={"sequence": [{"name": "words", "separator": " ", "max_len": WIDTH}]},
        tasks=[{"name": label, "kind": "tagging", "label": label, "tokens": "words", "max_len": WIDTH, "scheme": scheme}],
        model={"name": "shared_bottom", "bottom_hidden": [16], "tower_hidden": [8], "encoder": "tokens",
               "encoder_params": {"dim": 16}},
        epochs=5, batch_size=32, progress=False, seed=0, device="cpu", optimizer={"name": "adam", "lr": 0.02},
        out=out,
    )
    return out


@pytest.fixture(scope="module")
def run_dir(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tagger(files["train"], files["dev"], "upos", tmp_path_factory.mktemp("runs") / "upos")


def test_predict_writes_conllu_with_predicted_upos_and_everything_else_unchanged(
    files: dict[str, Path], run_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pred" / "out.conllu"
    result = runner.invoke(app, ["predict", str(run_dir), str(files["new"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    gold, pred = read_conllu(files["new"]), read_conllu(out)
    assert pred.num_rows == gold.num_rows == 40
    for column in ("sent_id", "text", "words", "lemmas", "xpos", "heads", "deprels", "deps", "misc",
                   "conllu_comments", "conllu_extra"):
        assert pred.column(column).equals(gold.column(column)), column
    tags = set(LEXICON[w][0] for w in WORDS)
    right = total = 0
    for words, got, want in zip(gold.column("words").to_pylist(), pred.column("upos").to_pylist(), gold.column("upos").to_pylist()):
        assert len(got) == len(words)
        cut = max(len(words) - WIDTH, 0)  # tokens before the last WIDTH were not read: no prediction
        assert got[:cut] == ["_"] * cut and set(got[cut:]) <= tags
        right += sum(g == w for g, w in zip(got[cut:], want[cut:]))
        total += len(words) - cut
    assert right / total > 0.9
    # line by line, only the UPOS field (4th) differs from the input
    for a, b in zip(files["new"].read_text().split("\n"), out.read_text().split("\n"), strict=True):
        fa, fb = a.split("\t"), b.split("\t")
        if len(fa) == 10 and fa[0].isdigit():
            assert fa[:3] + fa[4:] == fb[:3] + fb[4:]
        else:
            assert a == b


def test_predict_labels_with_the_gold_column_put_back_writes_the_input_file(
    files: dict[str, Path], run_dir: Path, tmp_path: Path
) -> None:
    run = polytask.load_run(run_dir)
    gold = read_table(files["new"])
    predicted = run.predict_labels(files["new"], source=str(files["new"]))
    assert predicted.column_names == gold.column_names and predicted.schema.equals(gold.schema)
    restored = predicted.set_column(predicted.column_names.index("upos"), "upos", gold.column("upos"))
    write_predictions(restored, tmp_path / "same.conllu", "conllu")
    assert (tmp_path / "same.conllu").read_bytes() == files["new"].read_bytes()
    # and with nothing predicted at all: read, write -> the same bytes
    write_conllu(gold, tmp_path / "copy.conllu")
    assert (tmp_path / "copy.conllu").read_bytes() == files["new"].read_bytes()


def test_predict_conll_columns_and_refusals(files: dict[str, Path], tmp_path: Path) -> None:
    gold = read_conllu(files["train"])
    # CoNLL-2000 style files: words, a POS column and BIO chunks (the chunk follows the tag)
    chunks = [["B-NP" if LEXICON[w][0] in ("DET", "PRON") else ("I-NP" if LEXICON[w][0] in ("NOUN", "ADJ") else "B-VP")
               for w in words] for words in gold.column("words").to_pylist()]
    table = gold.select(["words", "xpos"]).append_column("chunk", pa.array(chunks))
    for name, part in (("train", table.slice(0, 250)), ("dev", table.slice(250, 50))):
        write_conll_columns(part, tmp_path / f"{name}.conll", ["words", "xpos", "chunk"])
    run_dir = fit_tagger(tmp_path / "train.conll", tmp_path / "dev.conll", "chunk", tmp_path / "chunk-run", scheme="bio")
    out = tmp_path / "out.conll"
    result = runner.invoke(app, ["predict", str(run_dir), str(tmp_path / "dev.conll"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    pred, dev = read_conll_columns(out), read_conll_columns(tmp_path / "dev.conll")
    assert pred.column_names == ["words", "pos", "chunk"]
    assert pred.column("words").equals(dev.column("words")) and pred.column("pos").equals(dev.column("pos"))
    lengths = [len(w) for w in dev.column("words").to_pylist()]
    assert [len(c) for c in pred.column("chunk").to_pylist()] == lengths
    assert {c for x in pred.column("chunk").to_pylist() for c in x} <= {"_", "O", "B-NP", "I-NP", "B-VP", "I-VP"}
    # --keep has no meaning for a text-format output; an unknown suffix lists the text formats
    result = runner.invoke(app, ["predict", str(run_dir), str(tmp_path / "dev.conll"), "-o", str(tmp_path / "x.conllu"), "--keep", "words"])
    assert result.exit_code != 0 and "--keep" in result.output and not (tmp_path / "x.conllu").exists()
    result = runner.invoke(app, ["predict", str(run_dir), str(tmp_path / "dev.conll"), "-o", str(tmp_path / "x.xlsx")])
    assert result.exit_code != 0 and ".conllu" in result.output and ".conll" in result.output
