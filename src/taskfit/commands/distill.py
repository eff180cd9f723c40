"""``taskfit distill TEACHER_RUN``: a smaller student classifier trained from a fine-tuned teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from taskfit.commands.common import console, err_console, fail, offline_defaults
from taskfit.errors import TaskfitError
from taskfit.train.progress import Progress as TrainProgress


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)


class _RowBar:
    """A rich progress bar for row-by-row teacher work (labelling a pool, teacher logits)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=console, transient=False)
        self.tasks: dict[str, Any] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.bar.start()
            self.tasks[what] = self.bar.add_task(what, total=total)
        self.bar.update(self.tasks[what], completed=done)
        if done >= total:
            self.bar.stop()


class _TrainBar(TrainProgress):
    """The student's training progress: a rich bar with steps, loss and samples/s; validation lines."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]distil"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TextColumn("ETA"), TimeRemainingColumn(),
                            console=console, transient=False)
        self.task_id: Any = None

    def note(self, message: str) -> None:
        console.print(message, highlight=False, markup=False)

    def start(self, total_steps: int, done_steps: int) -> None:
        self.bar.start()
        self.task_id = self.bar.add_task("distil", total=total_steps, completed=done_steps, info="")

    def step(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        self.bar.update(self.task_id, completed=step, info=f"loss {loss:.4f}  {samples_per_s:.0f} samples/s")

    def evaluated(self, record: dict[str, Any]) -> None:
        parts = [f"{k.removeprefix('valid_')} {v:.4f}" for k, v in record.items() if k.startswith("valid_")]
        self.bar.console.print(f"  step {record['step']} valid: " + ", ".join(parts), highlight=False)

    def stop(self) -> None:
        self.bar.stop()


def distill(
    teacher: Path | None = typer.Argument(None, help="The teacher: a finished run directory (text_classification; "
                                          "with --pool also a generation run)."),
    student: str | None = typer.Option(None, "--student", help="Student model: a packaged name or a local Hugging "
                                       "Face directory (a new classification head is added)."),
    layers: int | None = typer.Option(None, "--layers", help="Student = the teacher cut to N of its transformer "
                                      "layers (every k-th, ending with the top one) plus its embeddings and head."),
    temperature: float = typer.Option(2.0, "--temperature", help="Softmax temperature T > 0 of the soft targets."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the hard-label cross-entropy in [0, 1]; the KL "
                                "term gets 1 - alpha (times T²)."),
    epochs: float | None = typer.Option(None, "--epochs", help="Passes over the training rows (default: the "
                                        "teacher recipe's; 3 with --pool)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Stop after this many optimiser steps."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: the teacher recipe's)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Rows per batch."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the new head, data order and dropout."),
    pool: Path | None = typer.Option(None, "--pool", help="Unlabelled texts (csv/tsv/jsonl/parquet) for the teacher "
                                     "to label; the student trains on them."),
    text_column: str = typer.Option("text", "--text-column", help="The pool's text column."),
    labels: str | None = typer.Option(None, "--labels", help="Comma-separated label set of a generation teacher."),
    prompt: str = typer.Option("{text}", "--prompt", help="A generation teacher's user turn; {text} is the pool "
                               "text and {labels} the label list."),
    out: Path | None = typer.Option(None, "--out", help="The student's run directory (default: TEACHER-distilled "
                                    "beside the teacher)."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Measure teacher and student (score, size, "
                                 "latency, throughput) in fresh processes after training."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out directory."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue an interrupted distillation run directory."),
) -> None:
    """Distil a fine-tuned teacher into a smaller student classifier (a normal run directory: `taskfit predict`
    and `taskfit compress` take it). Loss: alpha·CE(labels) + (1-alpha)·T²·KL(teacher/T ‖ student/T)."""
    offline_defaults()
    from taskfit.compress.distill import distill as run_distill
    from taskfit.compress.distill import resume_distill
    from taskfit.compress.distill_report import render

    try:
        if resume is not None:
            run_dir = resume_distill(resume, measure=measure, progress=_TrainBar(), on_rows=_RowBar())
        elif teacher is None:
            raise typer.BadParameter("give a TEACHER run directory, or --resume RUN_DIR")
        else:
            names = [s.strip() for s in labels.split(",") if s.strip()] if labels else None
            run_dir = run_distill(teacher, student=student, layers=layers, temperature=temperature, alpha=alpha,
                                  out=out, epochs=epochs, max_steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                                  pool=pool, text_column=text_column, labels=names, prompt=prompt,
                                  measure=measure, overwrite=overwrite, progress=_TrainBar(), on_rows=_RowBar())
    except TaskfitError as e:
        fail(e)
    except KeyboardInterrupt:
        err_console.print("\ninterrupted; the last checkpoint is kept. Continue with "
                          "`taskfit distill --resume RUN_DIR`.")
        raise typer.Exit(130) from None
    render(console, run_dir)
    console.print(f"[bold]student run:[/] {run_dir}\n[bold]report:[/] {run_dir / 'report.html'}")
