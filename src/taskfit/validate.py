"""``taskfit validate``: every problem of a recipe, its files, columns and model, reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskfit.config import Recipe, load_recipe
from taskfit.data.load import check_columns, load_splits, required_columns
from taskfit.data.readers import read_columns
from taskfit.errors import ConfigError, DataError, ModelNotFoundError
from taskfit.models import resolve_model


def input_problems(recipe: Recipe) -> list[str]:
    """Missing files, unreadable headers, missing columns and an unresolvable model, as dotted-path lines."""
    problems: list[str] = []
    for key in ("train", "valid", "test"):
        path = getattr(recipe.data, key)
        if path is None:
            continue
        if not Path(path).is_file():
            problems.append(f"data.{key}: file {str(path)!r} does not exist.")
            continue
        try:
            cols = read_columns(path)
        except DataError as e:
            problems.append(f"data.{key}: {e}")
            continue
        problems += check_columns(Path(path), cols, key, required_columns(recipe.data))
    try:
        resolve_model(recipe.model.name)
    except ModelNotFoundError as e:
        problems.append(f"model.name: {e}")
    return problems


def validate_recipe(path: str | Path, overrides: list[str]) -> dict[str, Any]:
    """Validate a recipe file fully without training.

    Returns:
        ``{"summary": str, "issues": [...data check findings...]}``.

    Raises:
        ConfigError: schema problems, or missing files / columns / model (all listed).
        DataError: fatal data check findings.
    """
    recipe = load_recipe(path, overrides)
    problems = input_problems(recipe)
    if problems:
        raise ConfigError(f"The recipe's inputs have {len(problems)} problem(s):", problems)
    splits = load_splits(recipe.data)
    rows = ", ".join(f"{k} {len(v)}" for k, v in splits.frames.items())
    summary = (f"{recipe.task} with {recipe.model.name} ({recipe.method.name}); {len(splits.labels)} labels; "
               f"rows: {rows}")
    return {"summary": summary, "issues": splits.issues}
