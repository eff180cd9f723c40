"""``taskfit profile`` (measure options on this machine) and ``taskfit advise`` (rank them for a workload)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import typer

from taskfit.commands.common import console, fail, offline_defaults
from taskfit.errors import TaskfitError


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
    app.command("advise")(advise)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def profile(
    models: str | None = typer.Option(None, "--models", help="Comma-separated model names or directories "
                                      "(default: every installed packaged model: text encoders, causal LM, image "
                                      "CNNs)."),
    methods: str = typer.Option("full,lora,frozen", "--methods", help="Comma-separated tuning methods."),
    precisions: str = typer.Option("auto", "--precisions", help="Comma-separated: fp32, bf16, auto (default: fp32, "
                                   "plus bf16 where train.precision=auto would use it: a GPU, or a CPU with native "
                                   "bf16 for text models; emulated bf16 is ~10× slower and only costs time)."),
    steps: int = typer.Option(5, "--steps", min=1, help="Timed training steps per batch shape (warm-up excluded)."),
    rows: int = typer.Option(32, "--rows", min=1, help="Rows per training batch."),
    lengths: str = typer.Option("16,128", "--lengths", help="Tokens per row of the two timed batch shapes."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch threads (default: all cores)."),
    image_sides: str = typer.Option("64,128,224", "--image-sides", help="Image models: the sides (px) of the timed "
                                    "batch shapes, two or more (time, memory and latency are piecewise-linear in "
                                    "pixels through them)."),
    out: Path | None = typer.Option(None, "--out", help="Profile file (default: ~/.cache/taskfit/profile-HOST.json, "
                                    "or under $TASKFIT_CACHE)."),
    force: bool = typer.Option(False, "--force", help="Measure every option again (default: resume, skipping "
                               "options already in the file)."),
) -> None:
    """Measure each option (model × method × precision) on this machine: seconds per training step at two batch
    shapes, peak memory, batch-1 latency and batch-32 throughput. Each option runs in a fresh process; the table
    is saved after each one, so an interrupted profile resumes."""
    offline_defaults()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from taskfit.advise.profile import ProfileSettings, check_options, default_models, planned, run_profile

    try:
        names = _csv(models) or default_models()
        ms, ps = _csv(methods), _csv(precisions)
        check_options(names, ms, ps)
        sides = _sizes(image_sides, "--image-sides", "two or more different image sides ≥ 16 px", "64,128,224",
                       least=16, count=None)
        lens = _sizes(lengths, "--lengths", "two different token counts ≥ 2", "16,128", least=2, count=2)
        settings = ProfileSettings(steps=steps, rows=rows, lengths=lens, threads=threads, image_sides=sides)
        bar = Progress(TextColumn("[bold]profile"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        with bar:
            tid = bar.add_task("profile", total=len(planned(names, ms, ps)), info="")
            seen: set[str] = set()

            def on_option(key: str, state: str) -> None:
                if state == "measuring":
                    bar.update(tid, info=f"{key} …")
                    return
                seen.add(key)
                bar.update(tid, completed=len(seen), info=f"{key} {state}")

            run = run_profile(names, ms, ps, out=out, settings=settings, force=force, on_option=on_option)
    except TaskfitError as e:
        fail(e)
    render_profile(run.doc)
    console.print(f"measured {len(run.measured)}, skipped (already in the file) {len(run.skipped)}, "
                  f"failed {len(run.failed)}", highlight=False)
    for key, why in run.failed.items():
        console.print(f"[red]failed[/] {key}: {why}", highlight=False, markup=True, soft_wrap=True)
    console.print(f"[bold]profile:[/] {run.path}")


def _sizes(value: str, flag: str, what: str, example: str, least: int, count: int | None) -> tuple[int, ...]:
    """Different integers ≥ ``least`` from "A,B[,C...]" (exactly ``count`` of them, or at least two), else a
    ConfigError naming the flag and the value."""
    from taskfit.errors import ConfigError

    try:
        sizes = tuple(int(x) for x in _csv(value))
    except ValueError:
        sizes = ()
    if (len(sizes) != count if count else len(sizes) < 2) or min(sizes) < least or len(set(sizes)) != len(sizes):
        raise ConfigError(f"{flag}: {what} are needed, e.g. {example}; got {value!r}.")
    return sizes


def render_profile(doc: dict[str, Any]) -> None:
    from rich.table import Table

    m = doc["machine"]
    table = Table(title=f"{m.get('cpu')} · {m.get('cpu_cores')} cores · {m.get('torch_threads')} threads"
                  + (f" · {m['gpu']}" if m.get("gpu") else ""))
    for col in ("model", "method", "precision", "s/step (short)", "s/step (long)", "tokens|px /s (long)",
                "train +MB", "latency ms (short/long)", "rows/s @32"):
        table.add_column(col, justify="left" if col in ("model", "method", "precision") else "right")
    for e in doc["options"].values():
        short, long = e["train"][0], e["train"][-1]
        lat = e["inference"]["latency_ms"]
        rate = long["tokens"] / long["step_s"]
        per_s = f"{rate / 1e6:.2f}M px" if e.get("unit") == "pixels" else f"{rate:.0f}"
        table.add_row(e["model"], e["method"], e["precision_used"], f"{short['step_s']:.3f}", f"{long['step_s']:.3f}",
                      per_s, f"{e['train_peak_mb']:.0f}",
                      " / ".join(f"{v:.1f}" for v in lat.values()), f"{e['inference']['throughput_rows_s']:.0f}")
    console.print(table)


def advise(
    task: str = typer.Option(..., "--task", help="The task (e.g. text_classification, ner, generation, "
                                   "image_classification)."),
    rows: int | None = typer.Option(None, "--rows", help="Labelled rows you have (default: the rows of --data)."),
    labels: int | None = typer.Option(None, "--labels", help="Number of labels (classification)."),
    languages: str | None = typer.Option(None, "--languages", help="Comma-separated languages of the texts, "
                                         "e.g. zh,en."),
    hardware: str | None = typer.Option(None, "--hardware", help="cpu, or a GPU name (e.g. H100) that a profile "
                                        "was measured on."),
    latency_ms: float | None = typer.Option(None, "--latency-ms", help="Serving latency limit (batch 1, ms)."),
    budget_hours: float | None = typer.Option(None, "--budget-hours", help="Training time limit in hours."),
    budget_money: float | None = typer.Option(None, "--budget-money", help="Training cost limit (with "
                                              "--price-per-hour)."),
    price_per_hour: float | None = typer.Option(None, "--price-per-hour", help="Price of one hour of the hardware."),
    memory_gb: float | None = typer.Option(None, "--memory-gb", help="Memory limit of the training process (GB)."),
    objective: str = typer.Option("quality", "--objective", help="Rank by quality, time, cost or latency."),
    epochs: float = typer.Option(3.0, "--epochs", help="Passes over the data (recipe default 3)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Rows per batch (recipe default 32)."),
    tokens: float = typer.Option(128.0, "--tokens", help="Mean tokens per row (default 128, data.max_length: an "
                                 "upper bound). --data measures it."),
    data: Path | None = typer.Option(None, "--data", help="Your data file (CSV/TSV/JSONL/Parquet): rows and tokens "
                                     "per row are measured with each model's tokenizer."),
    text_column: str = typer.Option("text", "--text-column", help="Text column of --data (generation reads its "
                                     "prompt/response or messages columns)."),
    max_length: int = typer.Option(128, "--max-length", min=8, help="data.max_length of the run: --data rows are "
                                   "cut to it (generation packs each batch into rows of this many tokens)."),
    image_size: int = typer.Option(224, "--image-size", min=16, max=1024, help="image_classification: the side "
                                   "images are trained at (task.image_size, default 224). --data for images: a "
                                   "folder with one sub-folder per class, or a table with an 'image' column."),
    profile_file: Path | None = typer.Option(None, "--profile", help="A profile written by `taskfit profile` "
                                             "(default: this machine's, else built-in reference figures)."),
    as_json: bool = typer.Option(False, "--json", help="Print the advice as JSON."),
    show_rejected: bool = typer.Option(True, "--show-rejected/--hide-rejected", help="List rejected options."),
) -> None:
    """Rank options (model × method × precision) for your task and data: estimated training time, peak memory,
    serving latency, cost and expected quality, filtered by your constraints, with the reasoning per option."""
    offline_defaults()
    from taskfit.advise import Constraints, Workload, select_profile
    from taskfit.advise import advise as run_advice
    from taskfit.advise.advisor import KIND_OF_TASK, check_workload
    from taskfit.errors import ConfigError

    try:
        limits = Constraints(latency_ms, budget_hours, budget_money, price_per_hour, memory_gb)
        langs = tuple(x.lower() for x in _csv(languages))
        if rows is None and data is None:
            raise ConfigError("--rows is required (or give --data to count the rows of your file).")
        # peak memory comes with the longest batch: without --data assume rows as long as data.max_length (128)
        work = Workload(task, rows if rows is not None else 1, labels, langs, epochs, batch_size, tokens,
                        max(128, math.ceil(tokens)))
        image = task == "image_classification"
        if image:  # a row's "tokens" are its pixels (see taskfit.advise.estimate)
            work = dataclasses.replace(work, tokens=float(image_size * image_size), longest=image_size,
                                       image_side=image_size)
        check_workload(work, objective, limits)  # bad input fails before any file is read
        doc, source = select_profile(hardware, profile_file)
        if data is not None and image:
            from taskfit.advise.tokens import image_rows

            work = dataclasses.replace(work, rows=rows if rows is not None else image_rows(data))
        elif data is not None:
            from taskfit.advise.tokens import data_tokens

            # counted with the tokenizers of the models that can train the task only (a generation file with the
            # causal LMs' chat templates; a text file with the encoders'; image models have no tokenizer)
            want = KIND_OF_TASK.get(task, "encoder")
            models = sorted({e["model"] for e in doc["options"].values() if e.get("kind") == want})
            counted = data_tokens(data, text_column, models, max_length=max_length, task=task)
            work = counted.workload(Workload(task, rows if rows is not None else counted.rows, labels, langs,
                                             epochs, batch_size))
        result = run_advice(work, doc, objective=objective, limits=limits, source=source)
    except TaskfitError as e:
        fail(e)
    if as_json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return
    from taskfit.advise.render import render_advice

    render_advice(console, result, show_rejected)
