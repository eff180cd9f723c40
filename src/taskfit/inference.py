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
from taskfit.errors import ConfigError, DataError, NotFittedError
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
        return self.task.probabilities(self.outputs(texts, pairs))

    def outputs(self, texts: list[str], pairs: list[str] | None = None) -> Any:
        """The model's raw outputs for ``texts`` (logits for classifiers, scores for regression): the forward
        pass every task has, used to time models whatever their task."""
        texts, pairs = self._masked(texts) or [], self._masked(pairs)
        enc = self.task.encode(self.task.input_frame(texts, pairs), self.processor, self.labels)
        return self.task.run_outputs(self.model, enc, self.device, self.dtype)

    def predict(self, inputs: list[str], pairs: list[str] | None = None, top_k: int = 3) -> list[dict[str, Any]]:
        """One JSON-able dict per input (a label with scores, entities, answers, generated text...)."""
        if top_k < 1:
            raise DataError(f"top_k must be at least 1, got {top_k}.")
        return self.task.predict(self.model, self.processor, self._masked(inputs) or [], self.labels, self.device,
                                 self.dtype, top_k=top_k, pairs=self._masked(pairs))

    def evaluate_file(self, path: str | Path) -> dict[str, Any]:
        """Score a labelled file with the task's own reader and checks (unknown labels name their rows)."""
        frame = read_labelled_file(self.task, self.meta, path)
        enc = self.task.encode(frame, self.processor, self.labels)
        return self.task.evaluate(self.model, enc, self.labels, self.device, self.dtype)


def read_labelled_file(task: Task, meta: dict[str, Any], path: str | Path,
                       keep_columns: list[str] | None = None) -> pd.DataFrame:
    """Labelled rows of a file, read with the model's own column names, checks and labels (an unknown label
    or a missing column is named with its file and rows); ``keep_columns`` are carried along when present."""
    cfg = DataConfig(train=Path(path), text=meta.get("text", "text"), text_pair=meta.get("text_pair"),
                     label=meta.get("label", "label"), valid_fraction=0.1,
                     max_length=int(meta.get("max_length", 128)), keep_columns=keep_columns or [])
    problems = task.input_problems(cfg)
    if problems:
        raise DataError(" ".join(p.removeprefix("data.train: ") for p in problems), source=path)
    return task.read_eval_file(cfg, list(meta.get("labels") or []))


def held_out_rows(run_dir: str | Path, task: Task, meta: dict[str, Any], data: str | Path | None = None,
                  keep_columns: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """The labelled rows a finished run is measured on after training (attacks, audit, compression) and where
    they come from: ``data`` if given, else the run's own test split (validation when the recipe held out no
    test rows), rebuilt from ``RUN_DIR/recipe.yaml`` by the same deterministic split, and PII-masked when the
    run was trained on masked text."""
    from taskfit.config import load_recipe
    from taskfit.trust import mask_pii

    if data is not None:
        return read_labelled_file(task, meta, data, keep_columns), str(data)
    run_dir = Path(run_dir)
    recipe_path = next((d / "recipe.yaml" for d in (run_dir, run_dir.parent) if (d / "recipe.yaml").is_file()), None)
    if recipe_path is None:
        raise ConfigError(f"{str(run_dir)!r} has no recipe.yaml to find the run's test rows in; give labelled rows "
                          "with --data FILE (same columns as training).")
    recipe = load_recipe(recipe_path)
    missing = [c for c in keep_columns or [] if c not in recipe.data.keep_columns]
    if missing:
        recipe.data.keep_columns = [*recipe.data.keep_columns, *missing]
    run_task = TASKS.get(recipe.task.name).from_config(recipe.task, recipe.data)
    splits = run_task.load_splits(recipe.data)
    mask_pii(recipe, run_task, splits)  # the model was trained and tested on masked text
    split = "test" if "test" in splits.frames else "valid"
    return splits.frames[split], f"{split} split of {recipe_path}"
