"""Train stage: the loop, schedules and checkpoints."""

from taskfit.train.hooks import StepHook
from taskfit.train.loop import Progress, TrainResult, train_loop

__all__ = ["Progress", "StepHook", "TrainResult", "train_loop"]
