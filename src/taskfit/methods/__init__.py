"""Tuning methods (registry). Importing this package registers every built-in method."""

from taskfit.methods import frozen, full, lora  # noqa: F401  (registration side effect)
from taskfit.methods.base import METHODS, Method, MethodConfig, count_trainable

__all__ = ["METHODS", "Method", "MethodConfig", "count_trainable"]
