"""``taskfit compress RUN_DIR --method M``: a smaller / faster copy of a run's model, measured before and after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from taskfit.commands.common import console, fail, offline_defaults
from taskfit.errors import TaskfitError
from taskfit.train.progress import Progress


class _RecoveryBar(Progress):
    """Fine-tuning (pruning recovery, distillation) as a rich bar with steps, loss and ETA."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(TextColumn("[bold]fine-tuning"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        self.task_id: Any = None

    def note(self, message: str) -> None:
        console.print(message, highlight=False, markup=False)

    def start(self, total_steps: int, done_steps: int) -> None:
        self.bar.start()
        self.task_id = self.bar.add_task("recovery", total=total_steps, completed=done_steps, info="")

    def step(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        self.bar.update(self.task_id, completed=step, info=f"loss {loss:.4f}  {samples_per_s:.0f} samples/s")

    def stop(self) -> None:
        self.bar.stop()


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)


def compress(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    method: str = typer.Option("onnx-int8", "--method", help="onnx, onnx-int8, torch-int8, prune-heads, prune-ffn, "
                               "prune-structured, prune-magnitude, distill or merge; or a chain applied in order, "
                               "e.g. distill,prune-ffn,onnx-int8 (compared with the original)."),
    out: Path | None = typer.Option(None, "--out", help="New run directory (default: RUN_DIR-METHOD beside it)."),
    data: Path | None = typer.Option(None, "--data", help="Labelled rows to score on (default: the run's test "
                                     "split)."),
    rows: int | None = typer.Option(None, "--rows", min=1, help="Score on the first N rows only."),
    tolerance: float = typer.Option(0.005, "--tolerance", help="Flag the model when its headline score drops by "
                                    "more than this (0.005 = half a point of accuracy)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out directory."),
    sparsity: float | None = typer.Option(None, "--sparsity", help="prune-*: fraction removed, in [0, 1): of the "
                                          "heads, of each layer's FFN neurons, or of the encoder weights "
                                          "(default 0.3)."),
    recovery_steps: int | None = typer.Option(None, "--recovery-steps", help="prune-*: fine-tuning steps on the "
                                              "run's training rows after pruning; 0 = none (default 50)."),
    importance: str | None = typer.Option(None, "--importance", help="prune-heads/ffn/structured: taylor "
                                          "(gradients on training rows, default) or magnitude (weights only)."),
    scope: str | None = typer.Option(None, "--scope", help="prune-magnitude: global (default) or layer ranking."),
    layers: int | None = typer.Option(None, "--layers", help="distill: transformer layers the student keeps "
                                      "(default: half the model's, rounded up)."),
    temperature: float | None = typer.Option(None, "--temperature", help="distill: softmax temperature T > 0 of "
                                             "the soft targets (default 2)."),
    alpha: float | None = typer.Option(None, "--alpha", help="distill: weight of the hard-label loss in [0, 1] "
                                       "(default 0.5)."),
) -> None:
    """Compress a run's model into a new run directory and print the before/after table (score, size,
    latency p50/p95 at batch 1, throughput at batch 32, memory). The new model loads in `taskfit predict`."""
    offline_defaults()
    from taskfit.compress import compress_run
    from taskfit.compress.run import render

    options = {"sparsity": sparsity, "recovery_steps": recovery_steps, "importance": importance, "scope": scope,
               "layers": layers, "temperature": temperature, "alpha": alpha}
    try:
        result = compress_run(run_dir, method, out=out, data=data, rows=rows, tolerance=tolerance,
                              overwrite=overwrite, note=lambda m: console.print(f"[dim]{m}[/]", highlight=False),
                              options=options, progress=_RecoveryBar())
    except TaskfitError as e:
        fail(e)
    except KeyboardInterrupt:
        steps = [m.strip() for m in method.split(",")]
        resumable = len(steps) > 1 or "distill" in steps or (method.startswith("prune-") and recovery_steps != 0)
        console.print("[yellow]interrupted" + (": finished steps, the pruned or distilled model and the training "
                      "checkpoint are kept; run the same command again to resume." if resumable else ".") + "[/]")
        raise typer.Exit(130) from None
    render(console, result)
    _render_details(result.run_dir)
    console.print(f"[bold]compressed run:[/] {result.run_dir}\n[bold]report:[/] {result.report}")


def _render_details(run_dir: Path) -> None:
    """One line each on what pruning removed and what recovery gained, or on the merge check."""
    import json

    export = json.loads((run_dir / "compression.json").read_text(encoding="utf-8")).get("export", {})
    info, merge, dist = export.get("pruning"), export.get("merge"), export.get("distillation")
    if export.get("compression_steps"):
        console.print("[bold]steps:[/] " + " → ".join(export["compression_steps"]), highlight=False)
    if dist:
        console.print(f"[bold]distillation:[/] layers {dist['layers_before']} → {dist['layers']} (kept "
                      f"{dist['kept_layers']}); parameters {dist['params_before'] / 1e6:.2f}M → "
                      f"{dist['params_after'] / 1e6:.2f}M; {dist['steps']} training steps in {dist['train_s']:.0f} s",
                      highlight=False)
    if info:
        parts = [f"parameters {info['params_before'] / 1e6:.2f}M → {info['params_after'] / 1e6:.2f}M"]
        if "heads_per_layer" in info:
            parts.append(f"heads per layer {info['heads_per_layer']}")
        if "intermediate_size" in info:
            parts.append(f"FFN width {info['intermediate_before']} → {info['intermediate_size']}")
        if "sparsity" in info:
            parts.append(f"zero weights {info['sparsity']:.1%} (dense kernels: no speed-up; zlib size "
                         f"{info['weights_zlib_mb']} MB of {info['weights_mb']} MB)")
        console.print("[bold]pruning:[/] " + "; ".join(parts), highlight=False)
        rec = info.get("recovery")
        if rec and rec.get("valid_after"):
            key = next(iter(rec["valid_after"]))  # the task's first headline metric (accuracy, f1, mae...)
            console.print(f"[bold]recovery:[/] {rec['steps']} steps; validation {key} {rec['valid_before'].get(key)}"
                          f" after pruning → {rec['valid_after'][key]} after recovery", highlight=False)
    if merge and "max_abs_logit_diff" in merge:
        console.print(f"[bold]merge:[/] largest logit difference to {merge['compared_with']} on "
                      f"{merge['compared_rows']} rows: {merge['max_abs_logit_diff']:.2e}", highlight=False)
