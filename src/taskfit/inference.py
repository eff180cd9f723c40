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
import pandas as pd
import torch

from taskfit.config import DataConfig
from taskfit.data.checks import ROW
from taskfit.data.load import read_split
from taskfit.errors import DataError, NotFittedError
from taskfit.tasks import TASKS, Encoded, Task
from taskfit.train import evaluate
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
    """A loaded model ready to predict."""

    model: torch.nn.Module
    tokenizer: Any
    meta: dict[str, Any]
    task: Task
    device: torch.device
    dtype: torch.dtype | None

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @classmethod
    def load(cls, path: str | Path, precision: str = "fp32") -> Predictor:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        mdir = model_dir_of(path)
        meta = json.loads((mdir / "taskfit.json").read_text(encoding="utf-8"))
        device = pick_device()
        model = AutoModelForSequenceClassification.from_pretrained(mdir).to(device).eval()
        task = TASKS.get(meta["task"])(text=meta["text"], text_pair=meta.get("text_pair"), label=meta["label"])  # type: ignore[call-arg]
        return cls(model, AutoTokenizer.from_pretrained(mdir), meta, task, device,
                   pick_precision(precision, device))

    def _encode(self, frame: pd.DataFrame) -> Encoded:
        return self.task.encode(frame, self.tokenizer, self.labels, self.meta["max_length"])

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def predict_proba(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """Class probabilities, shape [N, C], in ``self.labels`` order."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        cols = {self.meta["text"]: [str(t) for t in texts]}
        if self.meta.get("text_pair"):
            if pairs is None or len(pairs) != len(texts):
                raise DataError(f"This model reads text pairs: give one {self.meta['text_pair']!r} per text.")
            cols[self.meta["text_pair"]] = [str(p) for p in pairs]
        enc = self._encode(pd.DataFrame(cols))
        _, logits = evaluate(self.model, self.task, enc, self.labels, self.pad_id, self.device, self.dtype)
        return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()

    def predict(self, texts: list[str], pairs: list[str] | None = None, top_k: int = 3) -> list[dict[str, Any]]:
        """One dict per text: ``label``, ``score`` and the ``top_k`` (label, probability) pairs."""
        if top_k < 1:
            raise DataError(f"top_k must be at least 1, got {top_k}.")
        probs = self.predict_proba(texts, pairs)
        out = []
        for row in probs:
            order = np.argsort(-row)[:top_k]
            out.append({"label": self.labels[order[0]], "score": float(row[order[0]]),
                        "top": [{"label": self.labels[i], "score": float(row[i])} for i in order]})
        return out

    def evaluate_file(self, path: str | Path) -> dict[str, Any]:
        """Score a labelled file; unknown labels and missing columns are DataErrors naming rows."""
        cfg = DataConfig(train=Path(path), text=self.meta["text"], text_pair=self.meta.get("text_pair"),
                         label=self.meta["label"], valid_fraction=0.1)
        frame = read_split(Path(path), cfg, "data")
        unknown = ~frame[cfg.label].isin(set(self.labels))
        if unknown.any():
            raise DataError(f"label(s) {sorted(set(frame.loc[unknown, cfg.label]))[:5]} are not among the "
                            f"model's labels {self.labels}.", source=path, column=cfg.label,
                            rows=[int(r) for r in frame.loc[unknown, ROW]])
        metrics, _ = evaluate(self.model, self.task, self._encode(frame), self.labels, self.pad_id,
                              self.device, self.dtype)
        return metrics
