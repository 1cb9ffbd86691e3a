"""Every ``polytask train`` command of the README's Command line section runs as written (with one
epoch on a few census rows, and the run directory under a temporary folder): a README command that
fails is a defect."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polytask.cli import app
from polytask.data.paths import resolve_data_dir

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: what makes a README command quick: one epoch on a few hundred rows of each census split
QUICK = ["--set", "train.epochs=1", "--set", "data.params.max_rows=600", "--no-progress"]


def readme_train_commands() -> list[list[str]]:
    """The arguments after ``polytask`` of each ``polytask train`` command in the Command line
    section (continued lines joined, comments dropped, a ``torchrun ... --no-python`` prefix left
    out: what it launches is the same command)."""
    section = README.read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for i in range(len(words) - 1):
            if words[i] == "polytask" and words[i + 1] == "train":
                commands.append(words[i + 1:])
                break
    return commands


def _census_available() -> bool:
    try:
        return (resolve_data_dir() / "census_income_kdd" / "census-income.test.gz").is_file()
    except Exception:  # noqa: BLE001 - no data directory configured
        return False


def test_the_readme_shows_train_commands():
    commands = readme_train_commands()
    assert len(commands) >= 3
    assert all("--out" in c for c in commands)


@pytest.mark.skipif(not _census_available(), reason="census data not in the data directory")
@pytest.mark.parametrize("args", readme_train_commands(), ids=lambda a: a[a.index("--out") + 1])
def test_every_readme_train_command_runs(args, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # config paths are relative to the checkout
    args = list(args)
    out = tmp_path / args[args.index("--out") + 1]
    args[args.index("--out") + 1] = str(out)
    result = CliRunner().invoke(app, [*args, *QUICK])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and metrics["validation"] and metrics["test"]
