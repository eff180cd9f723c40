"""CLI commands beyond train/validate/predict, one module per verb group; each module has
``register(app)`` adding its commands to the ``taskfit`` Typer app (see :func:`register_all`)."""

from __future__ import annotations

import importlib

import typer

# One entry per command module of this package (taskfit.commands.<name>).
COMMAND_MODULES: tuple[str, ...] = (
    "audit", "compress", "distill", "explain", "attack", "federate", "pii",
    "serve", "keys", "registry", "retrain", "console", "new", "advise",
)


def register_all(app: typer.Typer) -> None:
    """Add every command module's verbs to ``app``."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"taskfit.commands.{name}").register(app)
