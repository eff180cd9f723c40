"""``taskfit federate recipe.yaml``: federated fine-tuning with Flower (the recipe's ``federated`` block, or
its defaults: 3 clients, iid shares, 3 rounds of FedAvg in simulation). Prints one line per round and ends
with a normal run directory that ``taskfit predict`` / ``eval`` / ``audit`` accept."""

from __future__ import annotations

from pathlib import Path

import typer

from taskfit.commands.common import console, err_console, fail, offline_defaults
from taskfit.errors import TaskfitError
from taskfit.train.progress import Progress


class _Lines(Progress):
    """Round lines on the console (no bar: a round is one unit of waiting)."""

    def note(self, message: str) -> None:
        console.print(message, highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``taskfit federate``."""

    @app.command()
    def federate(
        recipe: Path = typer.Argument(..., help="Recipe YAML file (its `federated:` block sets clients, rounds, "
                                      "partition, strategy and mode)."),
        overrides: list[str] | None = typer.Argument(None, help="Dotted overrides, e.g. federated.rounds=5 "
                                                      "federated.strategy=fedprox federated.mode=processes"),
    ) -> None:
        """Fine-tune across clients that keep their rows (Flower: FedAvg/FedProx, LoRA-only updates), then
        evaluate the global model and write the run directory and report."""
        offline_defaults()
        from taskfit.config import load_recipe
        from taskfit.federated import run_federated

        try:
            summary = run_federated(load_recipe(recipe, overrides or []), progress=_Lines())
        except TaskfitError as e:
            fail(e)
        except KeyboardInterrupt:
            err_console.print("\ninterrupted; Flower processes were stopped.")
            raise typer.Exit(130) from None
        fed = summary.federated
        console.print(f"\n[bold]run directory:[/] {summary.run_dir}\n[bold]report:[/] {summary.report}")
        console.print(f"{fed['rounds']} rounds, {fed['clients']} clients, {fed['failures']} client failure(s); "
                      f"{fed['bytes_per_client']:,} bytes per client and direction each round "
                      f"({fed['exchange_share']:.2%} of the full model)", highlight=False)
        shown, name = (summary.test_metrics, "test") if summary.test_metrics else (summary.valid_metrics, "valid")
        acc = shown.get("accuracy")
        line = f"{name} accuracy {acc:.4f}" if isinstance(acc, float) else f"{name} loss {shown['loss']:.4f}"
        console.print(f"[bold green]{line}[/]", highlight=False)
