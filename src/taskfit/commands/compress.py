"""``taskfit compress RUN_DIR --method M``: a smaller / faster copy of a run's model, measured before and after."""

from __future__ import annotations

from pathlib import Path

import typer

from taskfit.commands.common import console, fail, offline_defaults
from taskfit.errors import TaskfitError


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)


def compress(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    method: str = typer.Option("onnx-int8", "--method", help="onnx, onnx-int8 or torch-int8."),
    out: Path | None = typer.Option(None, "--out", help="New run directory (default: RUN_DIR-METHOD beside it)."),
    data: Path | None = typer.Option(None, "--data", help="Labelled rows to score on (default: the run's test "
                                     "split)."),
    rows: int | None = typer.Option(None, "--rows", min=1, help="Score on the first N rows only."),
    tolerance: float = typer.Option(0.005, "--tolerance", help="Flag the model when its headline score drops by "
                                    "more than this (0.005 = half a point of accuracy)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out directory."),
) -> None:
    """Compress a run's model into a new run directory and print the before/after table (score, size,
    latency p50/p95 at batch 1, throughput at batch 32, memory). The new model loads in `taskfit predict`."""
    offline_defaults()
    from taskfit.compress import compress_run
    from taskfit.compress.run import render

    try:
        result = compress_run(run_dir, method, out=out, data=data, rows=rows, tolerance=tolerance,
                              overwrite=overwrite, note=lambda m: console.print(f"[dim]{m}[/]", highlight=False))
    except TaskfitError as e:
        fail(e)
    render(console, result)
    console.print(f"[bold]compressed run:[/] {result.run_dir}\n[bold]report:[/] {result.report}")
