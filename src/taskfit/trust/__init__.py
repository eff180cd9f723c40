"""Trust stage: privacy (PII masking, DP-SGD), robustness (adversarial training, attacks), fairness and
explanations. The pipeline talks to this package only through the functions below; each feature lives in
its own module and is imported only when the recipe turns it on (Opacus, Presidio, fairlearn and captum
are not loaded by plain runs).

Modules: ``pii`` (Presidio + own recognisers), ``dp`` (Opacus DP-SGD hook), ``adversarial`` (FGM/PGD hook),
``attacks`` (ATTACKS registry: perturbation attacks for ``taskfit attack``), ``fairness`` (fairlearn),
``explain`` (captum integrated gradients).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from taskfit.config import Recipe
    from taskfit.data import Splits
    from taskfit.tasks.base import Encoded, Task
    from taskfit.train.hooks import StepHook


def recipe_problems(recipe: Recipe) -> list[str]:
    """Problems of the trust blocks of a recipe (a task or method they cannot work with), as dotted-path lines,
    found before any data is read."""
    problems: list[str] = []
    if recipe.privacy.dp is not None:
        from taskfit.trust import dp

        problems += dp.recipe_problems(recipe)
    if recipe.adversarial is not None:
        from taskfit.trust import adversarial

        problems += adversarial.recipe_problems(recipe)
    if recipe.privacy.dp is not None and recipe.adversarial is not None:
        problems.append("adversarial: adversarial training cannot be combined with privacy.dp in one run (both "
                        "own the backward pass); turn one of them off.")
    if recipe.fairness is not None:
        from taskfit.trust import fairness

        problems += fairness.recipe_problems(recipe)
    if recipe.data.pii_mask:
        from taskfit.trust import pii

        problems += pii.recipe_problems(recipe)
    return problems


def step_hooks(recipe: Recipe, task: Task, n_train: int) -> list[StepHook]:
    """The training-step hooks the recipe asks for (DP-SGD, adversarial training)."""
    hooks: list[StepHook] = []
    if recipe.privacy.dp is not None:
        from taskfit.trust.dp import DPHook

        hooks.append(DPHook(recipe.privacy.dp, recipe.train, n_train))
    if recipe.adversarial is not None:
        from taskfit.trust.adversarial import AdversarialHook

        hooks.append(AdversarialHook(recipe.adversarial, task))
    return hooks


def mask_pii(recipe: Recipe, task: Task, splits: Splits) -> dict[str, Any] | None:
    """Mask personal data in the text columns of every split in place (``data.pii_mask``); return counts per
    split and type (never the values), or None when masking is off."""
    if not recipe.data.pii_mask:
        return None
    from taskfit.trust.pii import mask_splits

    return mask_splits(task, splits)


def fairness_results(recipe: Recipe, task: Task, model: torch.nn.Module, encoded: dict[str, Encoded],
                     splits: Splits, device: torch.device, dtype: torch.dtype | None) -> dict[str, Any] | None:
    """Per-group metrics on the test split (validation when there is none), or None when fairness is off."""
    if recipe.fairness is None:
        return None
    from taskfit.trust.fairness import evaluate_fairness

    return evaluate_fairness(task, model, encoded, splits, recipe.fairness, device, dtype)


def report_sections(results: dict[str, Any]) -> list[tuple[str, str]]:
    """HTML report sections (title, html) for whatever trust results a run has."""
    sections: list[tuple[str, str]] = []
    if results.get("pii"):
        from taskfit.trust.pii import pii_section

        sections.append(pii_section(results["pii"]))
    if results.get("privacy"):
        from taskfit.trust.dp import privacy_section

        sections.append(privacy_section(results["privacy"]))
    if results.get("adversarial"):
        from taskfit.trust.adversarial import adversarial_section

        sections.append(adversarial_section(results["adversarial"]))
    if results.get("fairness"):
        from taskfit.trust.fairness import fairness_sections

        sections += fairness_sections(results["fairness"])
    return sections
