"""``polytask affinity CONFIG -o OUT_DIR``: which tasks to train together (see
:mod:`polytask.analysis.lookahead` and :mod:`polytask.analysis.grouping`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def COMMAND(  # noqa: N802 - the name polytask.cli looks for
    config: Annotated[Path, typer.Argument(help="YAML config file (its model, data and optimiser; the weighting is equal).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write affinity.json and affinity.md into.")],
    set_: Annotated[list[str], typer.Option("--set", help="Override a config key: --set model.name=shared_bottom.")] = [],  # noqa: B006
    unset: Annotated[list[str], typer.Option("--unset", help="Remove a config key or section before --set: --unset model --set model.name=shared_bottom.")] = [],  # noqa: B006
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs of the joint run (default: the config's train.epochs, at most 5).")] = None,
    max_groups: Annotated[Optional[int], typer.Option("--max-groups", help="Show groupings into 1..K networks (default: one per task).")] = None,
    budget: Annotated[Optional[float], typer.Option("--budget", help="Most networks the advice may use (k networks cost k).")] = None,
    overlap: Annotated[bool, typer.Option("--overlap", help="TAG's selection: a task may also train, as an auxiliary, in networks that serve others.")] = False,
    every: Annotated[Optional[int], typer.Option("--every", help="Measure every N training steps (default: about 20 times per epoch).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Folder of datasets (default: $POLYTASK_DATA_DIR, else ../shared/data).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar (a line per epoch when not on a terminal).")] = True,
) -> None:
    """Measure task affinity in one short joint run (TAG lookahead, gradient cosines, easy/hard
    agreement) and advise which tasks to train together in 1..K networks."""
    from polytask.analysis.lookahead import measure_affinity
    from polytask.cli import _fail
    from polytask.errors import PolytaskError

    try:
        result = measure_affinity(config, data_dir=data_dir, epochs=epochs, overrides=list(set_), unset=list(unset), every=every,
                                  max_groups=max_groups, budget=budget, overlap=overlap, progress=progress)
        paths = result.save(out)
    except (PolytaskError, KeyError, OSError) as exc:
        _fail(exc)
        return
    result.print()
    typer.echo(f"wrote {paths[0]} and {paths[1].name}")
