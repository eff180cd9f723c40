"""What a task is: how its rows become tensors, which model head it uses, how it is scored.

Adding a task = one module that subclasses :class:`Task` and registers an instance in :data:`TASKS`.
The training loop only ever calls the methods below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskfit.registry import Registry


@dataclass
class Encoded:
    """A pre-tokenised split: variable-length token id arrays plus targets.

    Attributes:
        input_ids: one int array per row (no padding).
        token_type_ids: same shapes, or None when the model has no segment embeddings.
        targets: int class ids, shape [N].
        rows: 1-based source row numbers, for reports.
    """

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    targets: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self))


class Task(ABC):
    """The contract between a task module and the training loop."""

    name: str
    description: str

    @abstractmethod
    def build_model(
        self, model_dir: Path, labels: list[str], attention: str = "sdpa"
    ) -> tuple[torch.nn.Module, list[str]]:
        """Load the pretrained backbone with a new head; return (model, names of head modules)."""

    @abstractmethod
    def encode(self, frame: Any, tokenizer: Any, labels: list[str], max_length: int) -> Encoded:
        """Tokenise one split once, before training."""

    @abstractmethod
    def collate(self, enc: Encoded, idx: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
        """Build a padded batch of rows ``idx``; keys are model inputs plus ``labels``."""

    @abstractmethod
    def metrics(self, targets: np.ndarray, logits: np.ndarray, labels: list[str]) -> dict[str, Any]:
        """Score predictions of a whole split."""


TASKS: Registry[type[Task]] = Registry("task")
