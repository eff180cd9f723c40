"""Train stage: the loop, schedules and checkpoints.

The names below load on first use (PEP 562), so importing ``taskfit.train.progress`` alone does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskfit.train.hooks import StepHook
    from taskfit.train.loop import TrainResult, train_loop
    from taskfit.train.progress import Progress

__all__ = ["Progress", "StepHook", "TrainResult", "train_loop"]

_HOMES = {"Progress": "taskfit.train.progress", "StepHook": "taskfit.train.hooks",
          "TrainResult": "taskfit.train.loop", "train_loop": "taskfit.train.loop"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'taskfit.train' has no attribute {name!r}")
