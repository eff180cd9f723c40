"""``taskfit new SCENARIO [DIR]``: a ready folder for one business scenario (recipes, data, README, script)."""

from __future__ import annotations

from pathlib import Path

import typer

from taskfit.commands.common import console, fail
from taskfit.errors import ConfigError, TaskfitError


def register(app: typer.Typer) -> None:
    app.command("new")(new)


def new(
    scenario: str | None = typer.Argument(None, help="Scenario name (see --list)."),
    dest: Path | None = typer.Argument(None, help="Folder to create (default: ./SCENARIO); must be new or empty."),
    list_: bool = typer.Option(False, "--list", help="List the scenarios with a one-line description."),
    force: bool = typer.Option(False, "--force", help="Replace the contents of a non-empty DIR."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data samples and of any synthetic data."),
) -> None:
    """Create a scenario folder: recipe(s), the data (packaged real data, or clearly labelled synthetic data
    where no real data of the kind exists), a README (English and Chinese) and any small script. Then
    `taskfit train DIR/recipe.yaml` trains it offline."""
    from rich.table import Table

    from taskfit.scenarios import SCENARIOS, create_scenario, get_scenario

    if list_ or scenario is None:
        table = Table("scenario", "what it does", "data")
        for name in SCENARIOS.names():
            s = SCENARIOS.get(name)
            table.add_row(s.name, s.summary, s.data_note)
        console.print(table)
        if scenario is None and not list_:
            console.print("Create one with: taskfit new SCENARIO [DIR]", highlight=False)
        return
    try:
        spec = get_scenario(scenario)
        target = dest if dest is not None else Path(scenario)
        if seed < 0:
            raise ConfigError(f"--seed must be 0 or more, got {seed}.")
        with console.status(f"writing {spec.name} into {target} ..."):
            files = create_scenario(spec.name, target, force=force, seed=seed)
    except TaskfitError as e:
        fail(e)
    data = [f for f in files if "data" in f.relative_to(target).parts]
    others = [f for f in files if f not in data]
    console.print(f"[bold green]created[/] {target} ({spec.summary})", highlight=False)
    for f in others:
        console.print(f"  {f.relative_to(target)}", highlight=False)
    console.print(f"  data/ ({len(data)} files; {spec.data_note})", highlight=False)
    console.print("[bold]next:[/] (see README.md)")
    for step in spec.next_steps:
        console.print(f"  {step.format(dir=target)}", highlight=False, markup=False)
