"""``polytask export RUN_DIR --format onnx|torchscript -o model.onnx [--raw]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `polytask train`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The model file to write (e.g. model.onnx, model.pt).")],
    format: Annotated[str, typer.Option("--format", "-f", help="onnx or torchscript.")] = "onnx",
    raw: Annotated[bool, typer.Option("--raw", help="Output raw model outputs (logits) instead of predictions.")] = False,
    preprocess: Annotated[Optional[Path], typer.Option("--preprocess", help="Where to write preprocess.json (default: beside the model).")] = None,
    with_encoders: Annotated[bool, typer.Option("--with-encoders", help="ONNX: numeric and categorical encoders inside the graph; its inputs are the table's columns (numeric float64, categorical text).")] = False,
) -> None:
    """Export a trained run for serving: one input per feature group (numeric, categorical,
    seq:<name>, ...) with a dynamic batch axis, one output per task named after it (what `polytask
    predict` gives: probabilities for binary tasks, values for regression, class probabilities for
    multiclass; --raw: logits). Also writes preprocess.json (the fitted encoders) and
    polytask_preprocess.py (a numpy-only preprocessor that turns columns into the model's inputs).
    An architecture that cannot be exported, or an export that does not reproduce PyTorch, is
    refused with one line saying why."""
    from polytask.cli import _fail, _warnings_as_lines
    from polytask.errors import PolytaskError
    from polytask.export import export_run

    try:
        with _warnings_as_lines():
            result = export_run(run_dir, output, format, raw=raw, preprocess=preprocess, with_encoders=with_encoders)
    except (PolytaskError, KeyError, OSError) as exc:
        _fail(exc)
        return
    model = result.spec["model"]
    how = model["exporter"] + (f", opset {model['opset']}" if model.get("opset") else "")
    typer.echo(f"wrote {result.model} ({format}, {how}, {result.model.stat().st_size / 1024:,.0f} KiB)")
    typer.echo(f"wrote {result.preprocess} and {result.reference}")
    typer.echo("inputs:")
    if "columns" in result.spec:  # --with-encoders: one input per column
        for kind in ("float64", "string"):
            names = [c["name"] for c in result.spec["columns"] if c["dtype"] == kind]
            if names:
                typer.echo(f"  {len(names)} {kind} columns [batch]: {_short(names)}")
    for i in result.inputs if "columns" not in result.spec else ():
        typer.echo(f"  {i['name']}: {i['dtype']} [{', '.join(map(str, i['shape']))}]  ({_short(i['features'])})")
    typer.echo(f"outputs ({'raw: logits' if raw else 'as polytask predict'}):")
    for o in result.outputs:
        typer.echo(f"  {o['name']}: float32 [{', '.join(map(str, o['shape']))}]  ({o['kind']})")


def _short(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... {len(names)} columns" if len(names) > limit else "")


COMMAND = export
