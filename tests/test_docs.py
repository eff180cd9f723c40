"""The docs that are generated must match the code, and the README's commands must exist."""

from __future__ import annotations

import re
from pathlib import Path

from taskfit.cli import app
from taskfit.docs import recipe_reference

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_reference_is_up_to_date():
    assert (ROOT / "docs" / "recipe.md").read_text(encoding="utf-8") == recipe_reference(), (
        "docs/recipe.md is stale: run `taskfit schema --markdown > docs/recipe.md`")


def _command_names() -> set[str]:
    """Top-level verbs and command groups (``taskfit keys ...``, ``taskfit registry ...``)."""
    return ({c.name or c.callback.__name__ for c in app.registered_commands}
            | {g.name for g in app.registered_groups if g.name})


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # commands in code blocks (line starts) and in inline code
    used = set(re.findall(r"(?m)^\s*(?:\.venv/bin/)?taskfit ([a-z][a-z-]*[a-z])", readme))
    used |= set(re.findall(r"`(?:\.venv/bin/)?taskfit ([a-z][a-z-]*[a-z])", readme))
    assert {"train", "predict", "eval", "validate"} <= used
    known = _command_names()
    assert used <= known, f"README mentions unknown commands: {used - known}"
    assert "bash scripts/setup.sh && .venv/bin/taskfit demo" in readme
    assert ".venv/bin/python -m pytest -q" in readme
    assert ".venv/bin/python -m pytest -q" in (ROOT / ".ci" / "run").read_text()


def test_dataset_names_in_docs_and_examples_exist():
    """Every `taskfit demo --dataset X` / `taskfit dataset X DEST` shown to users names a packaged dataset,
    and every command in the Chinese docs exists."""
    from taskfit.data.packaged import DATASETS

    files = [ROOT / "README.md", *sorted((ROOT / "docs" / "zh").glob("*.md")),
             *sorted((ROOT / "examples").glob("*/*.md")), *sorted((ROOT / "examples").glob("*/recipe.yaml"))]
    named: set[str] = set()
    known_cmds = _command_names()
    for f in files:
        text = f.read_text(encoding="utf-8")
        named |= set(re.findall(r"taskfit demo[^\n`]*--dataset ([a-z0-9_]+)", text))
        named |= set(re.findall(r"taskfit dataset ([a-z0-9_]+)", text))
        cmds = set(re.findall(r"(?m)(?:^\s*(?:#\s*)?|`|：\s*)(?:\.venv/bin/)?taskfit ([a-z][a-z-]*[a-z])\b", text))
        assert cmds <= known_cmds, f"{f.name} mentions unknown commands: {cmds - known_cmds}"
    assert named, "the docs show no dataset commands"
    assert named <= set(DATASETS.names()), f"unknown datasets in docs: {named - set(DATASETS.names())}"
