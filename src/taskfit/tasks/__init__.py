"""Tasks (registry). Importing this package registers every built-in task."""

from taskfit.tasks import multi_label, ner, regression, text_classification  # noqa: F401  (registration side effects)
from taskfit.tasks.base import TASKS, Encoded, Task

__all__ = ["TASKS", "Encoded", "Task"]
from taskfit.tasks import image_classification  # noqa: F401,E402  (registration side effect)
from taskfit.tasks import generation  # noqa: F401,E402  (registration side effect)
from taskfit.tasks import retrieval  # noqa: F401,E402  (registration side effect)
