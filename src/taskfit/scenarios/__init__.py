"""Scenario templates: ``taskfit new NAME DIR`` writes a ready folder for one business use case.

A scenario is a folder of static template files (recipes, README.md in English and Chinese, a small
script) that ship as package data under ``templates/<name>/``, plus a ``build`` function that writes the
scenario's data into ``DIR/data/`` from the packaged real datasets (``taskfit.data.packaged``), or, where
no real data of the kind exists (user interactions, a timeline), clearly labelled synthetic data made
deterministically from a seed over real texts. Every scenario trains offline with ``taskfit train
DIR/recipe.yaml``.

The folder is assembled in a hidden temporary sibling of ``DIR`` and renamed into place at the end, so an
interrupted ``taskfit new`` never leaves a half-written folder behind; an existing non-empty ``DIR`` is
only replaced with ``force=True``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from taskfit.errors import ConfigError
from taskfit.registry import Registry

#: where the static files of every scenario live (package data)
TEMPLATES = "templates"


@dataclass(frozen=True)
class Scenario:
    """One scenario template.

    Attributes:
        name: the CLI name (``taskfit new NAME``), hyphenated.
        summary: one line for ``taskfit new --list``.
        template: folder under ``templates/`` holding the static files.
        build: ``build(folder, seed) -> files written``: writes the data (under ``folder/data``).
        recipes: the recipe files of the folder, the main one first (``recipe.yaml``).
        next_steps: commands shown after creation; ``{dir}`` is replaced by the folder.
        data_note: where the data comes from and its licence / synthetic nature (one line).
    """

    name: str
    summary: str
    template: str
    build: Callable[[Path, int], list[Path]]
    recipes: tuple[str, ...] = ("recipe.yaml",)
    next_steps: tuple[str, ...] = field(default_factory=tuple)
    data_note: str = ""


SCENARIOS: Registry[Scenario] = Registry("scenario")


def register_scenario(scenario: Scenario) -> Scenario:
    """Add ``scenario`` to :data:`SCENARIOS` (each scenario module calls this once)."""
    SCENARIOS.register(scenario.name)(scenario)
    return scenario


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; a miss lists every scenario with a fix."""
    if name not in SCENARIOS:
        raise ConfigError(f"Unknown scenario {name!r}. Available: {', '.join(SCENARIOS.names())}. "
                          "See them with one-line descriptions: taskfit new --list.")
    return SCENARIOS.get(name)


def _template_files(scenario: Scenario) -> list[tuple[str, bytes]]:
    """(relative path, content) of every static file of a scenario (package data; works from a wheel)."""
    root = resources.files("taskfit.scenarios").joinpath(TEMPLATES, scenario.template)
    out: list[tuple[str, bytes]] = []

    def walk(node: resources.abc.Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name.startswith(".") or child.name == "__pycache__":
                continue
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, rel + "/")
            else:
                out.append((rel, child.read_bytes()))

    walk(root, "")
    if not out:  # a broken install (package data left out of the wheel) must not produce an empty folder
        raise ConfigError(f"The templates of scenario {scenario.name!r} are missing from the installed taskfit "
                          f"({TEMPLATES}/{scenario.template}); reinstall taskfit.")
    return out


def _check_target(dest: Path, force: bool) -> None:
    """Refuse a file, a non-empty folder (unless ``force``), and never replace the working folder itself."""
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"Target {str(dest)!r} is a file, not a folder; give a new or empty folder path.")
    if not dest.is_dir() or not any(dest.iterdir()):
        return
    if not force:
        entries = sorted(p.name for p in dest.iterdir())
        shown = ", ".join(entries[:5]) + (f" (+{len(entries) - 5} more)" if len(entries) > 5 else "")
        raise ConfigError(f"Target folder {str(dest)!r} is not empty ({len(entries)} entries: {shown}); nothing "
                          "was written. Give a new or empty folder, or pass --force to replace its contents.")
    here, target = Path.cwd().resolve(), dest.resolve()
    if target == here or target in here.parents or target == Path.home().resolve():
        raise ConfigError(f"--force would delete {str(dest)!r}, which is the current folder, one of its parents "
                          "or the home folder; give a dedicated folder for the scenario.")


def create_scenario(name: str, dest: str | Path, force: bool = False, seed: int = 0) -> list[Path]:
    """Write scenario ``name`` into folder ``dest``: its templates plus its data.

    Args:
        name: a scenario name (``SCENARIOS.names()``).
        dest: the folder to create; it must be new or empty unless ``force``.
        force: replace the contents of a non-empty ``dest``.
        seed: seed of the data samples and of any synthetic data (same seed, same files).

    Returns:
        Every file written, as paths under ``dest``, sorted.

    Raises:
        ConfigError: unknown scenario, ``dest`` a file or a non-empty folder without ``force``.
        DataError: a packaged source dataset is not installed (naming the install command).
    """
    scenario = get_scenario(name)
    dest = Path(dest)
    _check_target(dest, force)
    files = _template_files(scenario)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Built beside dest (same filesystem) so the final rename is atomic.
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, content in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(content)
        scenario.build(tmp, seed)
        _swap_into_place(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(p for p in dest.rglob("*") if p.is_file())


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished ``tmp`` folder to ``dest``; an existing ``dest`` is moved aside first and removed
    only after the rename succeeded."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# Registration side effects: one module per scenario.
from taskfit.scenarios import (  # noqa: E402,F401
    customer_service,
    financial_news,
    image_triage,
    recommendation,
    risk_scoring,
)

__all__ = ["SCENARIOS", "Scenario", "create_scenario", "get_scenario", "register_scenario"]
