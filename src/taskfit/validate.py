"""``taskfit validate``: every problem of a recipe, its files, columns and model, reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskfit.config import Recipe, load_recipe
from taskfit.errors import ConfigError, IncompatibleError, ModelNotFoundError
from taskfit.models import resolve_model


def input_problems(recipe: Recipe) -> list[str]:
    """Missing files, unreadable headers, missing columns and an unresolvable model, as dotted-path lines."""
    from taskfit.tasks import TASKS

    task = TASKS.get(recipe.task.name).from_config(recipe.task, recipe.data)
    problems = task.input_problems(recipe.data)
    try:
        task.check_method(recipe.method.name)
    except IncompatibleError as e:
        problems.append(f"method.name: {e}")
    try:
        resolve_model(recipe.model.name)
    except ModelNotFoundError as e:
        problems.append(f"model.name: {e}")
    from taskfit.trust import recipe_problems

    problems += recipe_problems(recipe)
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
    from taskfit.tasks import TASKS

    task = TASKS.get(recipe.task.name).from_config(recipe.task, recipe.data)
    splits = task.load_splits(recipe.data)
    summary = f"{recipe.task.name} with {recipe.model.name} ({recipe.method.name}); {task.describe_data(splits)}"
    return {"summary": summary, "issues": splits.issues}
