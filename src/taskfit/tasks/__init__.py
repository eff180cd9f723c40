"""Tasks (registry). Importing this package registers every built-in task."""

from taskfit.tasks import (  # noqa: F401  (registration side effects)
    generation,
    image_classification,
    multi_label,
    ner,
    regression,
    retrieval,
    text_classification,
)
from taskfit.tasks.base import TASKS, Encoded, Task

__all__ = ["TASKS", "Encoded", "Task"]
