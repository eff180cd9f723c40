"""What every command shares: the consoles, the user-error exit and the offline defaults."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from taskfit.errors import TaskfitError
from taskfit.utils.env import offline_defaults

__all__ = ["console", "err_console", "fail", "offline_defaults"]

console = Console()
err_console = Console(stderr=True)


def fail(e: TaskfitError) -> NoReturn:
    """Print a user error without a traceback and exit with status 2."""
    err_console.print(f"[bold red]error:[/] {type(e).__name__}: ", end="", highlight=False)
    # soft_wrap: never insert line breaks into paths and values the user may copy from the message
    err_console.print(str(e), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)
