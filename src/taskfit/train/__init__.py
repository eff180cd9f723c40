"""Train stage: the loop, schedules and checkpoints.

The names below load on first use (PEP 562), so importing ``taskfit.train.progress`` alone does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskfit.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from taskfit.train.hooks import StepHook
    from taskfit.train.loop import TrainResult, train_loop
    from taskfit.train.progress import Progress

__all__ = ["Progress", "StepHook", "TrainResult", "train_loop"]

_HOMES = {"Progress": "taskfit.train.progress", "StepHook": "taskfit.train.hooks",
          "TrainResult": "taskfit.train.loop", "train_loop": "taskfit.train.loop"}


__getattr__ = lazy_exports(__name__, _HOMES)
