"""Step hooks: the ways a training step can differ from plain "forward, backward, optimiser step".

DP-SGD (per-example clipping and noise, Poisson-sampled batches, a privacy accountant) and adversarial
training (extra forward/backward passes on perturbed embeddings) both change the step; each is a
:class:`StepHook` the pipeline builds from the recipe (``taskfit.trust.step_hooks``) and hands to
:func:`taskfit.train.train_loop`. The loop calls, in order:

1. ``setup(model, fwd, optimizer, batcher, device)`` once, before the scheduler is built; a hook may return
   a wrapped forward module, optimizer or batch plan (Opacus' GradSampleModule / DPOptimizer / Poisson
   sampling). ``model`` stays the bare module whose weights are checkpointed and saved.
2. ``backward(compute_loss, loss, scale)`` for every batch instead of ``(loss * scale).backward()``;
   ``compute_loss()`` runs the forward pass again (under the same autocast) for hooks that need more passes.
3. ``after_step(step)`` after each optimiser step.
4. ``state_dict()`` goes into every checkpoint and ``load_state_dict`` restores it on ``--resume``.
5. ``teardown()`` once training stops (finished, stopped early or interrupted): take wrappers and module hooks
   off the model so that scoring, saving and explanations see a plain module.
6. ``summary()`` goes into ``TrainResult.extra[name]`` and from there into results.json and the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch


class BatchPlan(Protocol):
    """What the loop needs from a batcher: the batches of an epoch (index arrays) and how many there are."""

    def epoch(self, epoch: int) -> list[np.ndarray]: ...
    def __len__(self) -> int: ...


class StepHook:
    """Base hook: changes nothing. Subclasses override what they need."""

    name: str = "hook"
    #: True when the hook clips gradients itself (DP-SGD clips per example), so ``train.max_grad_norm`` is skipped.
    replaces_clipping: bool = False

    def setup(self, model: torch.nn.Module, fwd: torch.nn.Module, optimizer: torch.optim.Optimizer,
              batcher: BatchPlan, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer, BatchPlan]:
        return fwd, optimizer, batcher

    def backward(self, compute_loss: Callable[[], torch.Tensor], loss: torch.Tensor, scale: float) -> None:
        (loss * scale).backward()

    def after_step(self, step: int) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def teardown(self) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {}
