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
