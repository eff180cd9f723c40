"""A short recovery fine-tune of a pruned model on the run's own training rows, through taskfit's loop.

The rows are the run's training split rebuilt from ``RUN_DIR/recipe.yaml`` by the same deterministic split
(and PII-masked when the run was), the hyper-parameters the run's ``train:`` block with ``max_steps`` set to
the recovery steps; all weights train (full fine-tuning, whatever the run's method: pruning changed the
backbone itself). Training goes through :func:`taskfit.train.train_loop`, so it shows progress, writes
checkpoints and resumes after Ctrl-C (run the same ``taskfit compress`` command again). Adversarial training
from the recipe applies again; a run trained with differential privacy is refused, since further non-private
steps on its rows would void the privacy guarantee it reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from taskfit.config import Recipe, load_recipe
from taskfit.errors import ConfigError, IncompatibleError
from taskfit.tasks import TASKS, Task
from taskfit.tasks.base import Encoded
from taskfit.train import Progress, train_loop
from taskfit.train.hooks import StepHook
from taskfit.train.loop import pick_device


@dataclass
class TrainingRows:
    """The run's recipe, task and encoded train / valid rows, with the label order of the saved model."""

    recipe: Recipe
    task: Task
    train: Encoded
    valid: Encoded
    labels: list[str]


def recipe_of(run_dir: Path) -> Path | None:
    """The run's recipe.yaml (a compressed run keeps a copy beside its model)."""
    return next((d / "recipe.yaml" for d in (run_dir, run_dir.parent) if (d / "recipe.yaml").is_file()), None)


def check_recipe(run_dir: Path, method: str, why: str) -> Recipe:
    """The run's recipe, or ConfigError when there is none; IncompatibleError for a DP-trained run."""
    path = recipe_of(run_dir)
    if path is None:
        raise ConfigError(f"{str(run_dir)!r} has no recipe.yaml, so {method} cannot find the run's training rows "
                          f"for {why}; pass --importance magnitude --recovery-steps 0 to prune without data.")
    recipe = load_recipe(path)
    if recipe.privacy.dp is not None:
        raise IncompatibleError(f"{str(run_dir)!r} was trained with differential privacy (privacy.dp.epsilon="
                                f"{recipe.privacy.dp.epsilon}); {why} would train on its rows without DP-SGD and void "
                                "that guarantee. Pass --importance magnitude --recovery-steps 0.")
    return recipe


def load_training_rows(run_dir: Path, model_dir: Path, meta: dict[str, Any]) -> TrainingRows:
    """Rebuild and encode the run's train and valid splits (as the run saw them)."""
    from taskfit.trust import mask_pii

    recipe = load_recipe(recipe_of(run_dir))  # type: ignore[arg-type]  # checked by check_recipe first
    task = TASKS.get(recipe.task.name).from_config(recipe.task, recipe.data)
    splits = task.load_splits(recipe.data)
    mask_pii(recipe, task, splits)
    processor = task.load_processor(model_dir)
    labels = list(meta.get("labels") or splits.labels)  # the head's order, as saved
    enc = {s: task.encode(splits.frames[s], processor, labels) for s in ("train", "valid")}
    return TrainingRows(recipe, task, enc["train"], enc["valid"], labels)


class KeepZeros(StepHook):
    """Keeps magnitude-pruned weights at zero during recovery: re-applies the masks after every optimiser step
    (AdamW would otherwise grow them back). The masks are the zeros of the pruned model, so a resumed run
    rebuilds the same masks from the same saved model."""

    name = "keep_zeros"

    def __init__(self, linears: list[torch.nn.Linear]) -> None:
        self.linears = linears
        self.masks: list[torch.Tensor] = []

    def setup(self, model: torch.nn.Module, fwd: torch.nn.Module, optimizer: torch.optim.Optimizer,
              batcher: Any, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
        self.masks = [(m.weight != 0).to(m.weight.dtype) for m in self.linears]
        return fwd, optimizer, batcher

    def after_step(self, step: int) -> None:
        with torch.no_grad():
            for m, mask in zip(self.linears, self.masks, strict=True):
                m.weight.mul_(mask)


def _headline(task: Task, scores: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(scores[k]), 4) for k in task.headline if isinstance(scores.get(k), float)}


def recover(model: torch.nn.Module, rows: TrainingRows, steps: int, run_dir: Path, progress: Progress | None,
            keep_zeros: list[torch.nn.Linear] | None = None) -> dict[str, Any]:
    """Fine-tune ``model`` in place for ``steps`` optimiser steps; checkpoints under ``run_dir`` (resumed from
    when they exist). Returns steps, time and the validation headline before and after."""
    from taskfit.trust import step_hooks

    task, cfg = rows.task, rows.recipe.train
    # At least one checkpoint half-way: a recovery is short, and Ctrl-C should not lose all of it.
    cfg = cfg.model_copy(update={"max_steps": steps, "eval_every": steps,
                                 "checkpoint_every": min(cfg.checkpoint_every, max(1, steps // 2))})
    device = pick_device()
    model.to(device).eval()
    with torch.inference_mode():
        before = task.evaluate(model, rows.valid, rows.labels, device, None)
    for p in model.parameters():
        p.requires_grad_(True)
    hooks = step_hooks(rows.recipe, task, len(rows.train))
    if keep_zeros:
        hooks.append(KeepZeros(keep_zeros))
    head_names = [n for n in ("classifier", "score", "pre_classifier") if hasattr(model, n)]
    resume = (run_dir / "checkpoints").is_dir()
    result = train_loop(model=model, task=task, train=rows.train, valid=rows.valid, labels=rows.labels, cfg=cfg,
                        head_names=head_names, run_dir=run_dir, resume=resume, progress=progress, hooks=hooks)
    model.eval()
    with torch.inference_mode():
        after = task.evaluate(model, rows.valid, rows.labels, device, None)
    model.cpu()
    return {"steps": result.steps, "resumed": resume, "train_s": round(result.train_seconds, 2),
            "lr": cfg.lr, "batch_size": cfg.batch_size, "precision": result.precision, "valid_rows": len(rows.valid),
            "valid_before": _headline(task, before), "valid_after": _headline(task, after),
            "history": result.history}
