"""``taskfit retrain RUN_DIR --db URL``: fine-tune a served model on its users' feedback plus replay of its
training data, and promote the new version only when the original task did not suffer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from taskfit.commands.common import console, err_console, fail, offline_defaults
from taskfit.errors import TaskfitError
from taskfit.train.progress import Progress

GATE_REFUSED_EXIT = 3  # --promote was asked for and the gate refused: scripts can tell it from a user error (2)


class _Bar(Progress):
    """Training progress as a rich bar (steps, loss, ETA)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(TextColumn("[bold]retrain"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console)
        self.task_id: Any = None

    def note(self, message: str) -> None:
        console.print(message, highlight=False, markup=False, soft_wrap=True)

    def start(self, total_steps: int, done_steps: int) -> None:
        self.bar.start()
        self.task_id = self.bar.add_task("retrain", total=total_steps, completed=done_steps, info="")

    def step(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        self.bar.update(self.task_id, completed=step, info=f"loss {loss:.4f}")

    def stop(self) -> None:
        self.bar.stop()


def render(report: dict[str, Any]) -> None:
    """The before/after table and the decision."""
    from rich.table import Table

    table = Table(title=f"retrain of {report['model']!r}: {report['metric']} before → after")
    for col in ("test set", "rows", "before", "after", "change"):
        table.add_column(col, justify="left" if col == "test set" else "right")
    rows = report["rows"]
    for key, title, n in (("old_test", "old task (run's test split)", rows["old_test"]),
                          ("new_test", "new cases (held-out feedback)", rows["feedback_test"])):
        s = report["scores"][key]
        table.add_row(title, str(n), f"{s['before']:.4f}", f"{s['after']:.4f}", f"{s['delta']:+.4f}")
    console.print(table)
    console.print(f"trained on {rows['feedback_train']} feedback + {rows['replay']} replayed rows; "
                  f"gate: [bold]{report['gate']}[/] ({report['reason']})", highlight=False)
    colour = "green" if report["promoted"] else "yellow"
    console.print(f"[bold {colour}]decision: {report['decision']}"
                  + (f" (version {report['promoted']})" if report["promoted"] else "") + "[/]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``taskfit retrain``."""

    @app.command()
    def retrain(
        run_dir: Path = typer.Argument(..., help="The served run directory (its model is the starting point)."),
        db: str = typer.Option(..., "--db", help="The service database: sqlite:///path.db or "
                               "postgresql+psycopg://user:pw@host/db."),
        model: str | None = typer.Option(None, "--model", help="Name the model is served under (default: the "
                                         "run directory's name)."),
        replay: float = typer.Option(0.5, "--replay", help="Original training rows mixed in: a fraction ≤ 1 of "
                                     "them, or a row count > 1; 0 trains on feedback alone."),
        tolerance: float = typer.Option(0.02, "--tolerance", help="Largest allowed drop of the old-task score "
                                        "(absolute, in the task's main metric)."),
        holdout: float = typer.Option(0.3, "--holdout", help="Share of the feedback kept as the new test set."),
        promote: bool = typer.Option(False, "--promote", help="Register and promote the new version when the "
                                     "gate passes."),
        out: Path | None = typer.Option(None, "--out", help="New run directory (default: RUN_DIR-retrain); an "
                                        "unfinished one is resumed."),
        max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Optimiser steps of the fine-tuning."),
        epochs: float | None = typer.Option(None, "--epochs", min=0.01, help="Passes over the retraining set."),
        lr: float | None = typer.Option(None, "--lr", min=1e-9, help="Learning rate (default: the run's)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the feedback split and the replay sample."),
    ) -> None:
        """Fine-tune RUN_DIR's model on feedback + replay into a new run, score old and new model on the old
        test set and on held-out feedback, and promote only when the old-task score dropped by at most
        --tolerance. Exit status 3 when --promote was refused by the gate."""
        offline_defaults()
        from taskfit.serve.db import Store
        from taskfit.serve.retrain import retrain_run

        store = None
        try:
            store = Store(db)
            result = retrain_run(run_dir, store, model=model, out=out, replay=replay, tolerance=tolerance,
                                 holdout=holdout, promote=promote, seed=seed,
                                 overrides={"max_steps": max_steps, "epochs": epochs, "lr": lr}, progress=_Bar(),
                                 note=lambda m: console.print(f"[dim]{m}[/]", highlight=False))
        except TaskfitError as e:
            fail(e)
        except KeyboardInterrupt:
            err_console.print("\ninterrupted; run the same command again to resume.")
            raise typer.Exit(130) from None
        finally:
            if store is not None:
                store.close()
        render(result.report)
        console.print(f"[bold]new run:[/] {result.run_dir}\n[bold]report:[/] {result.run_dir / 'retrain.json'}")
        if promote and not result.report["promoted"]:
            raise typer.Exit(GATE_REFUSED_EXIT)
