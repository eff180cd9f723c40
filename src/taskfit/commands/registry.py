"""``taskfit registry list|add|promote|rollback``: the model registry of the service, in its database.

Stages: staging, production, archived; one production version per model name. ``promote`` to production archives
the previous production version; ``rollback`` restores it. The database is chosen as for ``taskfit keys``
(``--db`` or ``TASKFIT_DB_URL``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from taskfit.commands.common import console, err_console, fail
from taskfit.commands.keys import db_option, open_store
from taskfit.errors import TaskfitError


def run_metrics(path: Path) -> dict[str, float]:
    """Headline figures of a run directory (``results.json``: numbers of the valid and test splits), or ``{}``."""
    try:
        results = json.loads((path / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[str, float] = {}
    for split in ("valid", "test"):
        scores = results.get(split) if isinstance(results, dict) else None
        for key, value in (scores or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[f"{split}.{key}"] = float(value)
    return found


def _table(versions: list[Any]) -> Any:
    from rich.table import Table

    table = Table("model", "version", "stage", "path", "metrics", "registered (UTC)", "promoted (UTC)", "replaced")
    for v in versions:
        shown = ", ".join(f"{k} {val:.4g}" for k, val in list(v.metrics.items())[:3] if isinstance(val, (int, float)))
        stage = {"production": "[bold green]production[/]", "archived": "[dim]archived[/]"}.get(v.stage, v.stage)
        table.add_row(v.name, v.version, stage, v.path, shown or "-", v.created_at.strftime("%Y-%m-%d %H:%M"),
                      v.promoted_at.strftime("%Y-%m-%d %H:%M") if v.promoted_at else "-", v.previous_version or "-")
    return table


def register(app: typer.Typer) -> None:
    """Add ``taskfit registry``."""
    reg = typer.Typer(help="Model registry of `taskfit serve`: versions and stages, promote, rollback.",
                      no_args_is_help=True)
    app.add_typer(reg, name="registry")

    @reg.command("list")
    def list_(
        name: str | None = typer.Argument(None, help="Only this model."),
        db: str | None = db_option(),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """List registered versions with their stage."""
        try:
            with open_store(db) as store:
                versions = store.model_versions(name)
        except TaskfitError as e:
            fail(e)
        if as_json:
            rows = [{"name": v.name, "version": v.version, "stage": v.stage, "path": v.path, "metrics": v.metrics,
                     "created_at": v.created_at.isoformat(),
                     "promoted_at": v.promoted_at.isoformat() if v.promoted_at else None,
                     "previous_version": v.previous_version} for v in versions]
            print(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        console.print(_table(versions) if versions else "no registered models: taskfit registry add NAME VERSION "
                      "PATH --db ...")

    @reg.command("add")
    def add(
        name: str = typer.Argument(..., help="Model name (as served)."),
        version: str = typer.Argument(..., help="Version string, new for this name."),
        path: Path = typer.Argument(..., help="Run or model directory of this version."),
        stage: str = typer.Option("staging", "--stage", help="staging, production or archived."),
        db: str | None = db_option(),
    ) -> None:
        """Register a version (metrics read from PATH/results.json when present)."""
        if not path.exists():
            err_console.print(f"[yellow]warning:[/] {path} does not exist on this machine; registered anyway (the "
                              "service that loads it may see another file system).", highlight=False)
        try:
            with open_store(db) as store:
                mv = store.register_model(name, version, str(path.resolve()), stage=stage,
                                          metrics=run_metrics(path))
        except TaskfitError as e:
            fail(e)
        console.print(f"registered [bold]{mv.name}[/] version {mv.version} ({mv.stage})", highlight=False)

    @reg.command("promote")
    def promote(
        name: str = typer.Argument(..., help="Model name."),
        version: str = typer.Argument(..., help="Registered version."),
        stage: str = typer.Option("production", "--stage", help="staging, production or archived."),
        db: str | None = db_option(),
    ) -> None:
        """Move a version to a stage (production: the current production version is archived)."""
        try:
            with open_store(db) as store:
                mv = store.promote(name, version, stage)
        except TaskfitError as e:
            fail(e)
        was = f" (replaces {mv.previous_version})" if stage == "production" and mv.previous_version else ""
        console.print(f"[bold]{mv.name}[/] version {mv.version} is now {mv.stage}{was}", highlight=False)

    @reg.command("rollback")
    def rollback(
        name: str = typer.Argument(..., help="Model name."),
        db: str | None = db_option(),
    ) -> None:
        """Restore the production version the current one replaced (the current one is archived)."""
        try:
            with open_store(db) as store:
                mv = store.rollback(name)
        except TaskfitError as e:
            fail(e)
        console.print(f"[bold]{mv.name}[/] rolled back: version {mv.version} is production again", highlight=False)
