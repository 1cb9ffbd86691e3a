"""What ``polytask list`` prints, without importing torch.

Listing the registries means importing every built-in module, hence torch: about 2 s and 280 MB
to print a few dozen names. The names, one-line descriptions and task-kind metrics of the built-in
components are therefore also kept in ``catalog.json`` beside this file, which ``polytask list``
reads. ``tests/test_catalog.py`` fails when the file and the live registries disagree; refresh it
with ``python -m polytask.catalog``. ``polytask list --verbose`` (hyperparameters, read from the
constructors' signatures) still imports the registries themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("catalog.json")

#: (title, registry attribute in :mod:`polytask.registry`), in the order ``polytask list`` prints them
SECTIONS: tuple[tuple[str, str], ...] = (
    ("models", "MODELS"),
    ("weightings", "WEIGHTINGS"),
    ("datasets", "DATASETS"),
    ("encoders (model.encoder)", "ENCODERS"),
    ("column families (model.columns)", "COLUMNS"),
    ("loggers (train.loggers)", "LOGGERS"),
)


def build() -> dict[str, Any]:
    """The catalog from the live registries (imports every built-in module)."""
    from polytask import registry

    out: dict[str, Any] = {}
    for title, attr in SECTIONS:
        reg = getattr(registry, attr)
        out[title] = [{"name": n, "description": reg.describe(n)} for n in reg.names()]
    kinds = registry.TASK_KINDS
    out["task kinds"] = [
        {"name": n, "description": kinds.describe(n), "metrics": list(kind.example().metric_names())}
        for n, kind in kinds.items()
    ]
    return out


def load() -> dict[str, Any]:
    """The catalog as saved beside this module."""
    return json.loads(PATH.read_text(encoding="utf-8"))


def write() -> None:
    """Refresh ``catalog.json`` from the live registries."""
    PATH.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write()
    print(f"wrote {PATH}")
