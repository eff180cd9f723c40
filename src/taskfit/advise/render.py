"""Advice as rich tables: the ranked options, the reasoning per option, the rejected options."""

from __future__ import annotations

from typing import Any

from taskfit.advise.advisor import Advice, Option


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _quality(o: Option) -> str:
    q = o.quality
    return "–" if q is None else f"{q.metric} {q.value:.3f}" if q.value <= 1 else f"{q.metric} {q.value:.1f}"


def render_advice(console: Any, advice: Advice, show_rejected: bool = True) -> None:
    """Print the ranked table, each option's reasoning, and (optionally) what was rejected and why."""
    from rich.table import Table

    w = advice.workload
    for note in advice.notes:
        console.print(f"[bold yellow]{note}[/]", highlight=False)
    m = advice.machine
    hw = m.get("gpu") or f"{m.get('cpu')}, {m.get('cpu_cores')} cores, {m.get('torch_threads')} threads"
    inputs = (f"images of {w.image_side} px" if w.image_side else
              f"languages {', '.join(w.languages) or 'any'}")
    console.print(f"task {w.task} · {w.rows} rows ({w.train_rows} train) · {w.epochs:g} epochs × batch "
                  f"{w.batch_size} · {inputs} · on {hw} · ranked by "
                  f"{advice.objective}", highlight=False)
    table = Table(title="options")
    for col in ("#", "model", "method", "precision", "training", "peak MB", "latency ms", "rows/s", "cost",
                "expected quality"):
        table.add_column(col, justify="left" if col in ("model", "method", "precision", "expected quality")
                         else "right")
    for i, o in enumerate(advice.ranked, 1):
        e = o.estimate
        lat = f"{e.latency_ms:.1f}" + (" (int8)" if o.serve_as != "eager" else "")
        table.add_row(str(i), o.model, o.method, o.precision, _duration(e.total_s), f"{e.process_mb:.0f}", lat,
                      f"{e.throughput_rows_s:.0f}", "–" if o.cost is None else f"{o.cost:.2f}", _quality(o))
    console.print(table)
    if not advice.ranked:
        console.print("[bold red]no option meets the constraints[/]; relax them (see the rejected options).")
    for i, o in enumerate(advice.ranked, 1):
        console.print(f"[bold]{i}. {o.model} · {o.method} · {o.precision}[/]", highlight=False)
        for r in o.reasons:
            console.print(f"   {r}", highlight=False, markup=False, soft_wrap=True)
    if show_rejected and advice.rejected:
        console.print("[bold]rejected[/]")
        for o in advice.rejected:
            console.print(f"   {o.model} · {o.method} · {o.precision}: {o.rejected}", highlight=False,
                          markup=False, soft_wrap=True)
    console.print("[dim]training = training steps + evaluation + model load (checkpoint writes and data "
                  "loading excluded); peak MB = the whole training process; latency = eager fp32 forward of one "
                  "request (tokenisation excluded; for images the resize included); see docs/advise.md for how "
                  "each figure is scaled.[/]")
