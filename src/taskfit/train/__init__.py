"""Train stage: the loop, batching, schedules and checkpoints."""

from taskfit.train.loop import Progress, TrainResult, evaluate, train_loop

__all__ = ["Progress", "TrainResult", "evaluate", "train_loop"]
