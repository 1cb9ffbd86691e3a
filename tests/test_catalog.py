"""``polytask list`` reads a saved catalog instead of importing torch: it must match the registries."""

import subprocess
import sys

from polytask import catalog


def test_saved_catalog_matches_the_registries():
    assert catalog.load() == catalog.build(), "catalog.json is stale: run `python -m polytask.catalog`"


def test_catalog_lists_every_section_and_a_known_entry():
    saved = catalog.load()
    assert list(saved) == [title for title, _ in catalog.SECTIONS] + ["task kinds"]
    models = {e["name"]: e["description"] for e in saved["models"]}
    assert "mmoe" in models and "Mixture" in models["mmoe"]
    binary = next(e for e in saved["task kinds"] if e["name"] == "binary")
    assert "auc" in binary["metrics"]


def test_list_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from polytask.cli import app\n"
        "result = CliRunner().invoke(app, ['list'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'mmoe' in result.output and 'task kinds' in result.output, result.output\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
