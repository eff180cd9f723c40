"""``taskfit console``: the web console over a runs directory, on the serving stack (same keys, same database)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from taskfit.commands.common import console, err_console, fail, offline_defaults
from taskfit.errors import TaskfitError


def _model_name(path: Path, i: int) -> str:
    """A served model's name from its run directory: letters, digits, '.', '_' and '-' only (the service's rule);
    a name with none of those (a Chinese run name) becomes ``model-<i>``."""
    path = path.resolve()
    raw = path.parent.name if path.name == "model" else path.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("._-")
    return name or f"model-{i + 1}"


def register(app: typer.Typer) -> None:
    """Add ``taskfit console`` to the CLI."""

    @app.command("console")
    def console_cmd(
        runs: Path = typer.Option(Path("runs"), "--runs", help="Runs directory to show and launch into."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every interface)."),
        port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
        db: str | None = typer.Option(None, "--db", help="Database of keys, registry and alerts (sqlite:///path.db "
                                      "or postgresql+psycopg://...). Default: sqlite:///RUNS/console.db."),
        serve: list[Path] | None = typer.Option(None, "--serve", help="Also serve this run's model for the "
                                                "playground (repeat for several)."),
        no_keys: bool = typer.Option(False, "--no-keys", help="Let everyone in without an API key (local "
                                     "development only)."),
    ) -> None:
        """Open the web console: runs, comparisons, reports, a launch form, a playground, registry and alerts.

        Every data request needs an API key with scope admin (the playground: scope predict); create one with
        `taskfit keys create NAME --scope admin --db URL`. The page asks for it once per browser tab.
        """
        offline_defaults()
        import uvicorn

        from taskfit.console import console_router
        from taskfit.console.launch import JobManager
        from taskfit.serve.app import create_app
        from taskfit.serve.auth import Auth
        from taskfit.serve.db import Store
        from taskfit.serve.settings import load_settings

        runs.mkdir(parents=True, exist_ok=True)
        url = db or f"sqlite:///{(runs / 'console.db').resolve()}"
        serve = list(serve or [])
        try:
            settings = load_settings(run_dirs=serve, names=[_model_name(p, i) for i, p in enumerate(serve)],
                                     host=host, port=port, db_url=url, require_keys=not no_keys)
            store = Store(url)
        except TaskfitError as e:
            fail(e)
        jobs = JobManager(runs)
        try:
            router = console_router(runs, store, Auth(store, settings.require_keys), jobs)
            app = create_app(settings, store=store, extra_routers=[router])
            if no_keys:
                err_console.print("[bold yellow]warning:[/] --no-keys: anyone who can reach this port can read "
                                  "runs and start trainings.")
            elif not any("admin" in k.scopes and not k.revoked for k in store.list_keys()):
                err_console.print(f"no admin key yet: create one with `taskfit keys create NAME --scope admin "
                                  f"--db {url}`", highlight=False, markup=False, soft_wrap=True)
            console.print(f"console: http://{host}:{port}/console/  (runs: {runs.resolve()}; db: {url})",
                          highlight=False, markup=False, soft_wrap=True)
            uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
        except TaskfitError as e:
            fail(e)
        finally:
            jobs.stop_all()  # a training started from the page ends with the console (keeping its checkpoint)
            store.close()
