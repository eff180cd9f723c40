"""``taskfit keys create|list|revoke``: API keys of the service, in its database.

The database is named by ``--db`` or the ``TASKFIT_DB_URL`` environment variable: a URL
(``sqlite:///runs/news/serve.db``, ``postgresql+psycopg://user:pw@host/db``), a SQLite file path, or a run
directory (its ``serve.db``, the file ``taskfit serve RUN_DIR`` uses when given no ``--db``).
``create`` prints the raw key alone on stdout (so ``KEY=$(taskfit keys create ci ...)`` works) and says the rest
on stderr: the key is shown only this once; only a salted hash of it is stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from taskfit.commands.common import console, err_console, fail
from taskfit.errors import ConfigError, TaskfitError

if TYPE_CHECKING:
    from taskfit.serve.db import Store

DB_ENV = "TASKFIT_DB_URL"
DB_HELP = ("Database: URL (sqlite:///path/serve.db, postgresql+psycopg://user:pw@host/db), SQLite file, or a run "
           f"directory (its serve.db, the default of `taskfit serve`). Default: ${DB_ENV}.")


def db_option() -> str | None:
    """The ``--db`` option shared by the keys and registry commands."""
    return typer.Option(None, "--db", envvar=DB_ENV, help=DB_HELP, show_envvar=False)  # type: ignore[no-any-return]


def open_store(db: str | None) -> Store:
    """Open the Store ``db`` names (see the module docstring); ConfigError when none is given."""
    if not db:
        raise ConfigError(f"no database given: pass --db URL or set {DB_ENV}. `taskfit serve RUN_DIR` keeps its "
                          "keys and registry in RUN_DIR/serve.db unless started with --db, so e.g. "
                          "--db runs/news (a run directory) or --db sqlite:///runs/news/serve.db.")
    if "://" not in db and Path(db).is_dir():
        db = f"sqlite:///{Path(db) / 'serve.db'}"
    from taskfit.serve.db import Store

    return Store(db)


def register(app: typer.Typer) -> None:
    """Add ``taskfit keys``."""
    keys = typer.Typer(help="API keys of `taskfit serve`: create (shown once), list, revoke.", no_args_is_help=True)
    app.add_typer(keys, name="keys")

    @keys.command("create")
    def create(
        name: str = typer.Argument(..., help="Unique key name (appears in the request log)."),
        scope: list[str] = typer.Option(["predict"], "--scope", "-s", help="predict, feedback or admin "
                                        "(repeatable; admin implies all). Default: predict."),
        rate: int | None = typer.Option(None, "--rate", help="Requests per minute (default: unlimited)."),
        quota: int | None = typer.Option(None, "--quota", help="Total requests allowed (default: unlimited)."),
        db: str | None = db_option(),
    ) -> None:
        """Create a key and print it (only this once; store it in a secret manager)."""
        try:
            with open_store(db) as store:
                raw = store.create_key(name, scope, rate_per_minute=rate, quota=quota)
                where = store.display_url
        except TaskfitError as e:
            fail(e)
        limits = ", ".join(f"{k} {v}" for k, v in (("rate/min", rate), ("quota", quota)) if v) or "no limits"
        err_console.print(f"created key [bold]{name}[/] (scopes {', '.join(dict.fromkeys(scope))}; {limits}) in "
                          f"{where}. It is shown only now; send it as 'Authorization: Bearer <key>':",
                          highlight=False, markup=True)
        print(raw)

    @keys.command("list")
    def list_(
        db: str | None = db_option(),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """List keys (names, prefixes, scopes, limits, use); secrets are never shown."""
        try:
            with open_store(db) as store:
                found = store.list_keys()
        except TaskfitError as e:
            fail(e)
        if as_json:
            rows = [{"name": k.name, "prefix": k.prefix, "scopes": list(k.scopes), "rate_per_minute": k.rate_per_minute,
                     "quota": k.quota, "used": k.used, "revoked": k.revoked, "created_at": k.created_at.isoformat()}
                    for k in found]
            print(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        from rich.table import Table

        table = Table("name", "prefix", "scopes", "rate/min", "quota", "used", "status", "created (UTC)")
        for k in found:
            table.add_row(k.name, k.prefix + "…", ", ".join(k.scopes), str(k.rate_per_minute or "-"),
                          str(k.quota or "-"), str(k.used), "[red]revoked[/]" if k.revoked else "active",
                          k.created_at.strftime("%Y-%m-%d %H:%M"))
        console.print(table if found else "no API keys yet: taskfit keys create NAME --db ...")

    @keys.command("revoke")
    def revoke(
        name: str = typer.Argument(..., help="Name of the key to revoke."),
        db: str | None = db_option(),
    ) -> None:
        """Revoke a key: refused at once by every service using this database."""
        try:
            with open_store(db) as store:
                store.revoke_key(name)
        except TaskfitError as e:
            fail(e)
        console.print(f"revoked key [bold]{name}[/]", highlight=False)
