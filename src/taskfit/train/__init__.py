"""Train stage: the loop, schedules and checkpoints."""

from taskfit.train.loop import Progress, TrainResult, train_loop

__all__ = ["Progress", "TrainResult", "train_loop"]
