"""``configs/jmt.yaml`` trains from the command line (capped to a few sentences per source, one
epoch), and the run parses a treebank file back out as CoNLL-U."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from polytask.cli import app
from polytask.data.paths import resolve_data_dir
from polytask.data.text_formats import read_conllu

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "jmt.yaml"


def _data_dir() -> Path:
    """The data directory (a missing one fails, like the other dataset tests)."""
    return resolve_data_dir()


def test_the_jmt_config_trains_and_parses_a_treebank(tmp_path):
    runner = CliRunner()
    quick = ["--set", "train.epochs=1", "--set", "model.dim=8", "--set", "model.hidden=8", "--set", "model.label_dim=4",
             "--no-progress"]
    for source in ("ewt", "chunk", "sick"):
        quick += ["--set", f"data.sources.{source}.params.max_rows=60"]
    # 60 training sentences do not hold every UPOS tag the validation rows use: give the tag set
    import yaml

    from polytask.data.datasets.ud_english_ewt import UPOS_TAGS

    config = yaml.safe_load(CONFIG.read_text())
    config["data"]["tasks"][0]["classes"] = list(UPOS_TAGS)
    import pyarrow.compute as pc

    train = read_conllu(_data_dir() / "ud_english_ewt" / "en_ewt-ud-train.conllu.gz")
    config["data"]["tasks"][2]["classes"] = sorted(set(pc.list_flatten(train.column("deprels")).to_pylist()))
    path = tmp_path / "jmt.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(path), "--out", str(out), *quick])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"pos", "chunk", "dep", "relatedness", "entailment"}
    assert metrics["test"]["dep"]["count"] > 0 and metrics["test"]["relatedness"]["count"] > 0
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "successive" in log[0]["regularization"]  # the jmt schedule's penalty is logged
    # a treebank file of one source, parsed and written back
    source = _data_dir() / "ud_english_ewt" / "en_ewt-ud-dev.conllu.gz"
    gold = read_conllu(source).slice(0, 20)
    from polytask.data.text_formats import write_conllu

    small = tmp_path / "dev20.conllu"
    write_conllu(gold, small)
    parsed = tmp_path / "parsed.conllu"
    result = runner.invoke(app, ["predict", str(out), str(small), "-o", str(parsed)])
    assert result.exit_code == 0, result.output
    back = read_conllu(parsed)
    assert back.column("words").to_pylist() == gold.column("words").to_pylist()
    for heads, words in zip(back.column("heads").to_pylist(), back.column("words").to_pylist()):
        assert len(heads) == len(words) and all(0 <= h <= len(words) for h in heads)
    result = runner.invoke(app, ["evaluate", str(out), "--data", str(small), "--json"])
    assert result.exit_code == 0, result.output
