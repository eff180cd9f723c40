"""What every command shares: the consoles, the user-error exit and the offline defaults."""

from __future__ import annotations

import os
from typing import NoReturn

import typer
from rich.console import Console

from taskfit.errors import TaskfitError

console = Console()
err_console = Console(stderr=True)


def offline_defaults() -> None:
    """Nothing is fetched at run time unless the user opts in by setting HF_HUB_OFFLINE=0."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # taskfit draws its own progress; HF's load/save bars are noise


def fail(e: TaskfitError) -> NoReturn:
    """Print a user error without a traceback and exit with status 2."""
    err_console.print(f"[bold red]error:[/] {type(e).__name__}: ", end="", highlight=False)
    # soft_wrap: never insert line breaks into paths and values the user may copy from the message
    err_console.print(str(e), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)
