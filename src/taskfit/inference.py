"""Using a trained run: predict labels with probabilities, and score new labelled data.

Loads ``RUN_DIR/model`` (or any directory with a taskfit.json) with plain transformers, so what is
tested here is exactly what a user gets from ``AutoModelForSequenceClassification.from_pretrained``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskfit.config import DataConfig
from taskfit.errors import DataError, NotFittedError
from taskfit.models.exported import load_exported
from taskfit.tasks import TASKS, Task
from taskfit.train.loop import pick_device, pick_precision


def model_dir_of(path: str | Path) -> Path:
    """Accept a run directory or its model/ directory; raise NotFittedError when there is no model."""
    path = Path(path)
    for candidate in (path / "model", path):
        if (candidate / "taskfit.json").is_file():
            return candidate
    if (path / "checkpoints").is_dir():
        raise NotFittedError(f"{str(path)!r} has checkpoints but no finished model; finish training with "
                             f"`taskfit train --resume {path}`.")
    raise NotFittedError(f"{str(path)!r} is not a taskfit run or model directory (no taskfit.json found).")


@dataclass
class Predictor:
    """A loaded model ready to predict, for any task."""

    model: torch.nn.Module
    processor: Any
    meta: dict[str, Any]
    task: Task
    device: torch.device
    dtype: torch.dtype | None

    @property
    def labels(self) -> list[str]:
        return list(self.meta.get("labels") or [])

    @property
    def tokenizer(self) -> Any:
        return self.processor

    @classmethod
    def load(cls, path: str | Path, precision: str = "fp32") -> Predictor:
        mdir = model_dir_of(path)
        meta = json.loads((mdir / "taskfit.json").read_text(encoding="utf-8"))
        task = TASKS.get(meta["task"]).from_meta(meta)
        processor = task.load_processor(mdir)
        exported = load_exported(mdir, meta)  # ONNX / int8 models written by `taskfit compress`
        if exported is not None:
            return cls(exported.eval(), processor, meta, task, torch.device("cpu"), None)
        device = pick_device()
        model = task.load_trained(mdir, meta).to(device).eval()
        return cls(model, processor, meta, task, device, pick_precision(precision, device))

    def _masked(self, texts: list[str] | None) -> list[str] | None:
        """Inputs with personal data replaced by the placeholders the model was trained on (runs trained with
        data.pii_mask); other models get the inputs unchanged."""
        # NER answers with character offsets into the input, which masking would shift: its inputs stay as given.
        if not texts or not self.meta.get("pii_mask") or not self.task.text_input or self.task.name == "ner":
            return texts
        from taskfit.trust.pii import Masker

        masker = Masker()
        return [masker.mask(t)[0] for t in texts]

    def predict_proba(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """Label probabilities, shape [N, C], in ``self.labels`` order: softmax for single-label tasks (text,
        images), independent sigmoids for multi_label. Other tasks raise IncompatibleError."""
        if not texts:
            self.task.probabilities([np.zeros(len(self.labels), dtype=np.float32)])  # same error for every input
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        texts, pairs = self._masked(texts) or [], self._masked(pairs)
        enc = self.task.encode(self.task.input_frame(texts, pairs), self.processor, self.labels)
        return self.task.probabilities(self.task.run_outputs(self.model, enc, self.device, self.dtype))

    def predict(self, inputs: list[str], pairs: list[str] | None = None, top_k: int = 3) -> list[dict[str, Any]]:
        """One JSON-able dict per input (a label with scores, entities, answers, generated text...)."""
        if top_k < 1:
            raise DataError(f"top_k must be at least 1, got {top_k}.")
        return self.task.predict(self.model, self.processor, self._masked(inputs) or [], self.labels, self.device,
                                 self.dtype, top_k=top_k, pairs=self._masked(pairs))

    def evaluate_file(self, path: str | Path) -> dict[str, Any]:
        """Score a labelled file with the task's own reader and checks (unknown labels name their rows)."""
        cfg = DataConfig(train=Path(path), text=self.meta.get("text", "text"), text_pair=self.meta.get("text_pair"),
                         label=self.meta.get("label", "label"), valid_fraction=0.1,
                         max_length=int(self.meta.get("max_length", 128)))
        problems = self.task.input_problems(cfg)
        if problems:
            raise DataError(" ".join(p.removeprefix("data.train: ") for p in problems), source=path)
        frame = self.task.read_eval_file(cfg, self.labels)
        enc = self.task.encode(frame, self.processor, self.labels)
        return self.task.evaluate(self.model, enc, self.labels, self.device, self.dtype)
